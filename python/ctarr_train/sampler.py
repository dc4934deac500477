"""Patch sampling: picks a source by group weight, draws a random affine, resamples the patch (HU linear, labels
nearest, on just the crop the patch touches), renders or augments its intensities and applies the HU windows."""

import copy

import numpy as np
import torch
import torch.nn.functional as F

from . import augment, tissues
from .classes import WINDOWS_HU


def window(hu):
    """HU tensor [...] -> [3, ...] in [0, 1] (ctarr's windows, share/classes.json)."""
    return torch.stack([((hu - lo) / (hi - lo)).clamp_(0.0, 1.0) for lo, hi in WINDOWS_HU])


DEFAULT_GROUP_WEIGHTS = {"real": 0.4, "labelmap": 0.4, "icrp": 0.2, "synthetic": 1.0}


class PatchSampler:
    """Draws (input [3,P,P,P] float, labels [P,P,P] int64, labelled [20] bool, source name, info)."""

    def __init__(self, sources, patch=64, aug=None, group_weights=None, turns_from_step=None):
        """turns_from_step: a curriculum; before this training step no patch is turned by 90/180/270 degrees or
        flipped in z (the anatomy first, then the lying headers). None: turns and flips from the first step."""
        if not sources:
            raise ValueError("no training sources")
        self.sources, self.patch = sources, patch
        self.aug = aug or augment.AugmentConfig()
        self.turns_from_step = turns_from_step
        self.aug_upright = copy.copy(self.aug)
        self.aug_upright.p_rot90, self.aug_upright.p_zflip = 0.0, 0.0
        weights = dict(DEFAULT_GROUP_WEIGHTS, **(group_weights or {}))
        self.groups = {}
        for s in sources:
            self.groups.setdefault(s.group, []).append(s)
        total = sum(weights[g] for g in self.groups)
        self.group_p = {g: weights[g] / total for g in self.groups}
        p = (np.arange(patch) - (patch - 1) / 2.0).astype(np.float32)
        kk, jj, ii = np.meshgrid(p, p, p, indexing="ij")
        self.u = torch.from_numpy(np.stack([ii, jj, kk], -1).reshape(-1, 3))  # (i, j, k) offsets

    def describe(self):
        return {"group_probability": {g: round(p, 3) for g, p in self.group_p.items()},
                "turns_and_z_flips_from_step": self.turns_from_step or 0,
                "sources_per_group": {g: [s.name for s in v] for g, v in self.groups.items()},
                "within_a_group": "uniform over its sources"}

    def pick_source(self, rng):
        names = sorted(self.group_p)
        g = names[rng.choice(len(names), p=[self.group_p[n] for n in names])]
        members = self.groups[g]
        return members[rng.integers(len(members))]

    def centre(self, src, rng):
        present = [c for c in src.present_classes() if src.labelled[c]]
        if present and rng.random() < self.aug.p_fg:
            pts = src.points[present[rng.integers(len(present))]]
            kji = pts[rng.integers(len(pts))].astype(float) + rng.uniform(-self.patch / 4, self.patch / 4, 3)
        else:
            kji = src.body_points[rng.integers(len(src.body_points))].astype(float)
        return kji[::-1].copy()  # (i, j, k)

    def geometry_at(self, step):
        """The augmentation settings of the patch geometry at this training step (None: the full set)."""
        if step is not None and self.turns_from_step is not None and step < self.turns_from_step:
            return self.aug_upright
        return self.aug

    @staticmethod
    def phase_shift(src, sl, rng, info):
        """HU to add to a native real CT's crop to show it in another contrast phase (arterial / portal / delayed in
        the renderer's proportions): tissues.phase_delta_hu over the source's phase-dependent structures, weighted
        by the fraction of each 3 mm voxel they cover."""
        later = tissues.PHASES[1:]
        p = np.array(tissues.PHASE_P[1:]) / sum(tissues.PHASE_P[1:])
        phase = later[rng.choice(len(later), p=p)]
        info["real_phase"] = phase
        delta = tissues.phase_delta_hu(rng, phase)
        a = src.arrays
        return (delta[a["phase_g1"][sl]] * (a["phase_f1"][sl] / np.float32(255.0)) +
                delta[a["phase_g2"][sl]] * (a["phase_f2"][sl] / np.float32(255.0))).astype(np.float32)

    def sample(self, rng, src=None, step=None):
        src = src or self.pick_source(rng)
        m, info = augment.random_affine(self.geometry_at(step), rng)
        c = self.centre(src, rng)
        P = self.patch
        coords = self.u @ torch.from_numpy(m.T.astype(np.float32)) + torch.from_numpy(c.astype(np.float32))
        shape_ijk = np.array(src.shape[::-1])
        lo = np.floor(coords.min(0).values.numpy()).astype(int) - 1
        hi = np.ceil(coords.max(0).values.numpy()).astype(int) + 2
        lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, shape_ijk)
        if np.any(hi_c <= lo_c):  # the patch misses the volume: all padding
            hu = torch.full((P,) * 3, augment.PAD_HU)
            lab = torch.zeros((P,) * 3, dtype=torch.long)
        else:
            sl = (slice(lo_c[2], hi_c[2]), slice(lo_c[1], hi_c[1]), slice(lo_c[0], hi_c[0]))
            if src.kind == "render":
                phase = tissues.PHASES[rng.choice(4, p=tissues.PHASE_P)]
                info["phase"] = phase
                table = (tissues.sample_group_hu(rng, phase) + np.float32(1000.0)) / np.float32(255.0)
                a = src.arrays
                crop = table[a["g1"][sl]] * a["f1"][sl] + table[a["g2"][sl]] * a["f2"][sl]
                crop = torch.from_numpy(crop + np.float32(-1000.0 - augment.PAD_HU))  # HU + 1024
            else:
                crop = np.asarray(src.arrays["hu"][sl]).astype(np.float32) - np.float32(augment.PAD_HU)
                if self.aug.real_phase_p > 0 and "phase_g1" in src.arrays and rng.random() < self.aug.real_phase_p:
                    crop = crop + self.phase_shift(src, sl, rng, info)
                crop = torch.from_numpy(crop)
            labc = torch.from_numpy(np.asarray(src.labels[sl]).astype(np.float32))
            size = torch.tensor([hi_c[0] - lo_c[0], hi_c[1] - lo_c[1], hi_c[2] - lo_c[2]], dtype=torch.float32)
            g = (coords - torch.from_numpy(lo_c.astype(np.float32))) / (size - 1).clamp(min=1) * 2 - 1
            g = g.view(1, P, P, P, 3)
            hu = F.grid_sample(crop[None, None], g, mode="bilinear", padding_mode="zeros",
                               align_corners=True)[0, 0] + augment.PAD_HU
            lab = F.grid_sample(labc[None, None], g, mode="nearest", padding_mode="zeros",
                                align_corners=True)[0, 0].round().long()
        if src.kind == "render":
            # the renderer leaves exactly -1000 HU outside the body (interpolation moves every voxel near the skin)
            hu = augment.outside_objects(hu, (hu + 1000.0).abs() < 1e-3, self.aug, rng, info)
            hu = augment.scanner_effects(hu, self.aug, rng, 1.0)
        elif rng.random() < self.aug.real_intensity_p:
            scale = rng.uniform(*self.aug.real_contrast)
            shift = rng.uniform(-self.aug.real_shift_hu, self.aug.real_shift_hu)
            outside = hu <= augment.PAD_HU + 0.5
            hu = torch.where(outside, hu, augment.soft_tissue_contrast(hu, scale, shift))
            hu = augment.scanner_effects(hu, self.aug, rng, 0.5)
            info["contrast"] = [round(scale, 2), round(shift, 1)]
        hu, lab = augment.field_of_view(hu, lab, self.aug, rng, info)
        labelled = torch.from_numpy(src.labelled.copy())
        lab[~labelled[lab]] = 0  # a label the source does not claim never reaches the loss
        return window(hu), lab, labelled, src.name, info
