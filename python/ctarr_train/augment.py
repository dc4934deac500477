"""Augmentation settings and the intensity transforms of a patch (HU tensors [D, H, W])."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

PAD_HU = -1024.0   # outside the scan: windows to 0 in all three channels (= the C++ zero padding)


class AugmentConfig:
    def __init__(self, **kw):
        self.zoom = (0.8, 1.25)          # per axis, log-uniform, independent (anisotropic)
        self.rot_max_deg = 45.0           # in-plane rotation, uniform in +-rot_max_deg with p_rot
        self.p_rot = 0.5
        self.small_rot_deg = 10.0         # otherwise +-small_rot_deg
        self.p_rot90 = 0.25               # 90/180/270 degrees in-plane (prone, decubitus, lying headers)
        self.p_zflip = 0.15
        self.tilt_deg = 8.0               # out-of-plane tilt
        self.p_fg = 0.67                  # patch centre on a labelled class voxel
        self.p_fov_circle = 0.2
        self.p_fov_z = 0.15
        self.noise_sd = (0.0, 30.0)
        self.corr_noise_sd = (0.0, 25.0)
        self.blur_sigma = (0.0, 1.0)      # voxels (3 mm)
        self.bias_sd = (0.0, 30.0)        # HU, smooth additive field
        self.real_intensity_p = 0.6       # real CTs: intensity augmentation with this probability
        self.real_contrast = (0.75, 1.35)  # real CTs: soft-tissue contrast scale around 40 HU
        self.real_shift_hu = 35.0          # real CTs: soft-tissue shift +-
        self.real_phase_p = 0.0            # native real CTs: shown in another contrast phase with this probability
        self.p_outside_objects = 0.4       # rendered: foam / blankets / a table slab in the air around the body
        self.outside_foam_hu = (-960.0, -450.0)
        self.outside_slab_hu = (-950.0, 150.0)
        for k, v in kw.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown augmentation setting {k!r}")
            setattr(self, k, v)

    def describe(self):
        return {
            "scaling": f"anisotropic, per axis {self.zoom[0]}-{self.zoom[1]} (log-uniform)",
            "rotation": f"in-plane +-{self.rot_max_deg:g} deg (p {self.p_rot}, else +-{self.small_rot_deg:g}), "
                        f"plus 90/180/270 deg (p {self.p_rot90}), out-of-plane tilt +-{self.tilt_deg:g} deg",
            "z_flip": f"p {self.p_zflip}",
            "patch_centre": f"on a voxel of a random labelled class with p {self.p_fg}, else anywhere in the body",
            "fields_of_view": f"in-plane reconstruction circle (p {self.p_fov_circle}), scan end in z "
                              f"(p {self.p_fov_z}); outside the scan -1024 HU, labels background",
            "intensity_rendered": "per tissue group HU drawn per scan from wide ranges, contrast phase "
                                  "native/arterial/portal/delayed (p 0.3/0.2/0.35/0.15); lungs -950..-600; oral "
                                  "contrast / bowel gas; global offset N(0, 10 HU)",
            "intensity_real": f"with p {self.real_intensity_p}: soft-tissue contrast x U{self.real_contrast} about "
                              f"40 HU and shift +-{self.real_shift_hu:g} HU (smoothly limited to -200..400 HU), then "
                              f"half-strength blur / noise / bias",
            "contrast_phase_real": (f"with p {self.real_phase_p}: a native real CT shown in the arterial / portal / "
                                    "delayed phase (p 0.29/0.50/0.21): the renderer's phase HU minus the native "
                                    "middle added over its labelled vessels, heart, liver, spleen, kidneys, "
                                    "bladder urine, pancreas, bowel wall, thyroid and other soft tissue "
                                    "(TotalSegmentator masks, 3 mm fractions)"),
            "noise": f"Gaussian SD U{self.noise_sd} HU + correlated (blurred) SD U{self.corr_noise_sd} HU",
            "blur": f"Gaussian sigma U{self.blur_sigma} voxels per axis",
            "bias_field": f"smooth additive field SD U{self.bias_sd} HU",
            "outside_objects": f"rendered, p {self.p_outside_objects}: in the air around the body, smooth blobs "
                               f"of U{self.outside_foam_hu} HU (cushions, blankets, head holders) and/or a flat slab "
                               f"of U{self.outside_slab_hu} HU (table, mattress); labels background",
        }


def rotation(axis, angle):
    c, s = math.cos(angle), math.sin(angle)
    a, b = [(1, 2), (0, 2), (0, 1)][axis]
    m = np.eye(3)
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


def random_affine(cfg, rng):
    """Patch (i, j, k) offsets -> source voxel offsets: rotation, tilt, anisotropic zoom, z-flip."""
    zoom = np.exp(rng.uniform(math.log(cfg.zoom[0]), math.log(cfg.zoom[1]), 3))
    ang = rng.uniform(-cfg.rot_max_deg, cfg.rot_max_deg) if rng.random() < cfg.p_rot else \
        rng.uniform(-cfg.small_rot_deg, cfg.small_rot_deg)
    if rng.random() < cfg.p_rot90:
        ang += 90.0 * rng.integers(1, 4)
    m = rotation(2, math.radians(ang))  # about k: rotates (i, j)
    m = m @ rotation(0, math.radians(rng.uniform(-cfg.tilt_deg, cfg.tilt_deg)))
    m = m @ rotation(1, math.radians(rng.uniform(-cfg.tilt_deg, cfg.tilt_deg)))
    m = m @ np.diag(1.0 / zoom)
    flip = rng.random() < cfg.p_zflip
    if flip:
        m = m @ np.diag([1.0, 1.0, -1.0])
    return m, {"zoom": zoom.round(3).tolist(), "rot_deg": round(ang, 1), "zflip": bool(flip)}


def blur3d(vol, sigmas):
    """Separable Gaussian blur of a [D, H, W] tensor, per-axis sigma in voxels."""
    a = vol.numpy()
    for axis, s in enumerate(sigmas):
        if s >= 0.2:
            a = ndimage.gaussian_filter1d(a, s, axis=axis, mode="nearest", truncate=3.0)
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


def soft_tissue_contrast(hu, scale, shift, centre=40.0, lo=-200.0, hi=400.0):
    """Scales soft-tissue HU about `centre` and shifts them, fading to identity towards lo and hi so that fat, air
    and bone keep their values (a different contrast phase / kVp / reconstruction on a real CT)."""
    mapped = centre + (hu - centre) * scale + shift
    w = torch.clamp(torch.minimum(hu - lo, hi - hu) / 100.0, 0.0, 1.0)
    return hu + w * (mapped - hu)


def scanner_effects(hu, cfg, rng, strength):
    """Blur, white and correlated noise, smooth bias field; voxels outside the scan stay PAD_HU."""
    P = hu.shape
    outside = hu <= PAD_HU + 0.5
    s = rng.uniform(*cfg.blur_sigma) * strength
    if s > 0.2:
        hu = blur3d(hu, [s * rng.uniform(0.7, 1.3) for _ in range(3)])
    n = rng.uniform(*cfg.noise_sd) * strength
    if n > 0:
        hu = hu + torch.randn(hu.shape) * n
    cn = rng.uniform(*cfg.corr_noise_sd) * strength
    if cn > 1:
        z = blur3d(torch.randn(hu.shape), [rng.uniform(0.7, 1.5)] * 3)
        hu = hu + z / z.std().clamp(min=1e-6) * cn
    b = rng.uniform(*cfg.bias_sd) * strength
    if b > 1:
        coarse = torch.randn(1, 1, 3, 3, 3) * b
        hu = hu + F.interpolate(coarse, size=tuple(P), mode="trilinear", align_corners=True)[0, 0]
    return torch.where(outside, torch.full_like(hu, PAD_HU), hu)


def outside_objects(hu, outside_body, cfg, rng, info):
    """Objects in the air around a rendered body, labelled background: real CTs hold cushions, blankets, head holders
    and the table, from foam at -950 HU to carbon fibre at 0-150 HU, and a network that has only seen -1000 HU there
    calls lung-like foam lung (measured: air and foam in front of s0002's face segmented as lung). `outside_body` is
    the [D, H, W] bool mask of voxels the rendered source leaves outside the body (inside the scan)."""
    if rng.random() >= cfg.p_outside_objects or not bool(outside_body.any()):
        return hu
    P = hu.shape
    kinds = []
    if rng.random() < 0.7:  # smooth blobs: a coarse random field upsampled and thresholded
        cells = int(rng.integers(3, 8))
        field = F.interpolate(torch.randn(1, 1, cells, cells, cells), size=tuple(P), mode="trilinear",
                              align_corners=True)[0, 0]
        blobs = field > float(np.quantile(field.numpy(), rng.uniform(0.4, 0.9)))
        hu = torch.where(blobs & outside_body, torch.full_like(hu, rng.uniform(*cfg.outside_foam_hu)), hu)
        kinds.append("foam")
    if not kinds or rng.random() < 0.4:  # a flat slab at a random plane through the patch
        n = rng.normal(size=3)
        n /= np.linalg.norm(n)
        ii = [torch.arange(m, dtype=torch.float32) - (m - 1) / 2 for m in P]
        d = (n[0] * ii[0][:, None, None] + n[1] * ii[1][None, :, None] + n[2] * ii[2][None, None, :]
             - rng.uniform(-P[0] / 3, P[0] / 3))
        slab = d.abs() < rng.uniform(0.7, 3.0)
        hu = torch.where(slab & outside_body, torch.full_like(hu, rng.uniform(*cfg.outside_slab_hu)), hu)
        kinds.append("slab")
    info["outside_objects"] = kinds
    return hu


def field_of_view(hu, lab, cfg, rng, info):
    """Random reconstruction circle and scan end in z: outside is PAD_HU and background."""
    P = hu.shape[-1]
    cut = torch.zeros(hu.shape, dtype=torch.bool)
    if rng.random() < cfg.p_fov_circle:
        ci, cj = rng.uniform(-P / 2, P / 2, 2) + (P - 1) / 2
        r = rng.uniform(P * 0.4, P * 1.1)
        ii = torch.arange(P, dtype=torch.float32)
        d2 = (ii[None, None, :] - ci) ** 2 + (ii[None, :, None] - cj) ** 2
        cut |= d2.expand(hu.shape) > r * r
        info["fov_circle_r"] = round(r, 1)
    if rng.random() < cfg.p_fov_z:
        kz = int(rng.integers(P // 4, P - P // 4))
        if rng.random() < 0.5:
            cut[:kz] = True
        else:
            cut[kz:] = True
        info["fov_z"] = kz
    if cut.any():
        hu = hu.masked_fill(cut, PAD_HU)
        lab = lab.masked_fill(cut, 0)
    return hu, lab
