#!/usr/bin/python3
"""Renders a synthetic CT (Hounsfield units) from an ICRP Publication 110 phantom label map.

Each organ id gets a HU value from its tissue (organ table *_organs.dat: tissue number, density; tissue names
from *_media.dat), then a random per-organ and global offset, an optional Gaussian blur (scanner PSF), optional
resampling to a given spacing (linear: partial-volume edges), a crop to a z range and Gaussian noise. Outside
the body (id 0) is air, -1000 HU. Deterministic for a given --seed.

HU model, by tissue (rough, for training and tests, not dosimetry):
  soft tissue, blood, organs        1000 * (density - 1)       e.g. liver +50, blood +60, cartilage +100
  adipose / residual tissue         -100   (carbon-rich: lower than its density suggests)
  yellow marrow (medullary cavity)  -60
  lung tissue                       -830   (inflated lung; ICRP's 0.38 g/cm3 is compressed lung)
  spongiosa (trabecular bone)       150 + 1000 * (density - 1)   (about +180 .. +400)
  mineral (cortical) bone           +1250
  teeth                             +1900
  urine                             +10
  air inside the body, outside      -1000

The output geometry is the label map's affine (same direction); with --spacing the grid keeps the field of
view and gets the new spacing; --z-range keeps the slices whose centres lie in [zmin, zmax] (world z mm,
superior positive, the same in RAS and LPS). --resample-labels IN OUT writes any label map on the source grid
(e.g. the 19-class map from prepare_label_maps.py) onto the output grid (nearest neighbour), so a CT and its
labels stay aligned.

Example:
  /usr/bin/python3 scripts/render_ct.py --labels ../shared/data/icrp110/ICRP110_AM_organs.nii.gz \\
      --out build-data/ct/am_ct.nii.gz --spacing 3 3 3 --z-range 0 600 --seed 1 \\
      --resample-labels build-data/labels19/icrp110_AM_labels19.nii.gz build-data/ct/am_labels19.nii.gz
"""

import argparse
import re
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ctarr_labels as cl  # noqa: E402

AIR_HU = -1000.0
HU_MIN, HU_MAX = -1024.0, 3071.0


def tissue_hu(tissue_name, density):
    """Base HU of an ICRP 110 tissue (name as in *_media.dat) of the given density (g/cm3)."""
    n = tissue_name.lower()
    if n == "air":
        return AIR_HU
    if n == "teeth":
        return 1900.0
    if n == "mineral bone":
        return 1250.0
    if "medullary cavity" in n:
        return -60.0
    if "spongiosa" in n:
        return 150.0 + 1000.0 * (density - 1.0)
    if n.startswith("adipose"):
        return -100.0
    if n.startswith("lung tissue"):
        return -830.0
    if n == "urine":
        return 10.0
    return 1000.0 * (density - 1.0)


def organ_hu_table(organs, media):
    """float32[256]: base HU per organ id; id 0 (outside) is air. Ids missing from the table are left NaN."""
    table = np.full(256, np.nan, np.float32)
    table[0] = AIR_HU
    for oid, (_, tissue, density) in organs.items():
        if tissue not in media:
            raise SystemExit(f"error: tissue {tissue} of organ {oid} is not in the media table")
        table[oid] = tissue_hu(media[tissue][0], density)
    return table


def default_table(labels_path, kind):
    """ICRP110_AM_organs.nii.gz -> AM_organs.dat / AM_media.dat beside it."""
    m = re.search(r"(AM|AF)", labels_path.name)
    if not m:
        raise SystemExit(f"error: cannot tell AM/AF from {labels_path.name}; pass --organs and --media")
    return labels_path.parent / f"{m.group(1)}_{kind}.dat"


def output_grid(shape, affine, spacing, z_range):
    """(index transform T: output index -> input index (4x4), output shape)."""
    in_spacing = np.linalg.norm(affine[:3, :3], axis=0)
    ratio = np.ones(3) if spacing is None else np.asarray(spacing, float) / in_spacing
    out_shape = np.maximum(1, np.round(np.asarray(shape) * in_spacing / (in_spacing * ratio))).astype(int)
    T = np.eye(4)
    T[:3, :3] = np.diag(ratio)
    T[:3, 3] = 0.5 * ratio - 0.5  # keep the field of view's outer corner
    if z_range is not None:
        k_axis = affine[:3, 2] / in_spacing[2]
        if abs(k_axis[2]) < 0.9:
            raise SystemExit("error: --z-range needs the third voxel axis to run head-feet")
        A = affine @ T
        centre = np.array([(out_shape[0] - 1) / 2, (out_shape[1] - 1) / 2, 0.0, 1.0])
        ks = np.arange(out_shape[2])
        z = (A @ np.stack([np.full_like(ks, centre[0], dtype=float), np.full_like(ks, centre[1], dtype=float),
                           ks.astype(float), np.ones(len(ks))]))[2]
        keep = np.nonzero((z >= min(z_range)) & (z <= max(z_range)))[0]
        if keep.size == 0:
            raise SystemExit(f"error: --z-range {z_range} misses the volume (slice centres z {z.min():.1f} .. "
                             f"{z.max():.1f} mm)")
        k0, k1 = int(keep.min()), int(keep.max())
        shift = np.eye(4)
        shift[2, 3] = k0
        T = T @ shift
        out_shape[2] = k1 - k0 + 1
    return T, tuple(int(v) for v in out_shape)


def resample(volume, T, out_shape, order, cval):
    if np.allclose(T, np.eye(4)) and tuple(volume.shape) == tuple(out_shape):
        return volume
    return ndimage.affine_transform(volume, T[:3, :3], offset=T[:3, 3], output_shape=out_shape,
                                    order=order, mode="constant", cval=cval, prefilter=False)


def save(data, affine, like, path, dtype):
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.set_sform(affine, code=int(like.header["sform_code"]) or 1)
    img.set_qform(affine, code=int(like.header["qform_code"]) or 1)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(1.0, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--labels", type=Path, required=True, help="ICRP 110 organ-id label map (NIfTI)")
    ap.add_argument("--out", type=Path, required=True, help="output CT (NIfTI, .nii or .nii.gz)")
    ap.add_argument("--organs", type=Path, help="*_organs.dat (default: beside --labels, AM/AF from its name)")
    ap.add_argument("--media", type=Path, help="*_media.dat (default: beside --labels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise-hu", type=float, default=20.0, help="Gaussian noise SD per output voxel")
    ap.add_argument("--organ-offset-hu", type=float, default=8.0, help="SD of a random offset per organ id")
    ap.add_argument("--global-offset-hu", type=float, default=5.0, help="SD of one offset for the whole scan")
    ap.add_argument("--blur-mm", type=float, default=0.8, help="Gaussian PSF sigma in mm (0: none)")
    ap.add_argument("--spacing", type=float, nargs=3, metavar=("SX", "SY", "SZ"), help="output spacing, mm")
    ap.add_argument("--z-range", type=float, nargs=2, metavar=("ZMIN", "ZMAX"), help="world z range, mm")
    ap.add_argument("--dtype", choices=("int16", "float32"), default="int16")
    ap.add_argument("--resample-labels", nargs=2, action="append", default=[], metavar=("IN", "OUT"),
                    help="label map on the source grid, written on the output grid (nearest); repeatable")
    args = ap.parse_args()
    t0 = time.time()

    organs = cl.read_icrp110_organs(args.organs or default_table(args.labels, "organs"))
    media = cl.read_icrp110_media(args.media or default_table(args.labels, "media"))
    src = nib.load(str(args.labels))
    ids = np.asarray(src.dataobj)
    if ids.ndim != 3 or ids.min() < 0 or ids.max() > 255:
        raise SystemExit(f"error: {args.labels}: expected a 3D organ-id map with ids 0..255")
    ids = ids.astype(np.uint8)
    affine = src.affine

    table = organ_hu_table(organs, media)
    present = np.unique(ids)
    for oid in present:
        if np.isnan(table[oid]):
            # ICRP 110 id 141 (not in the organ table) is the skin layer on the top and bottom slices.
            table[oid] = 1000.0 * (1.09 - 1.0)
            print(f"note: organ id {oid} is not in the organ table: rendered as skin ({table[oid]:+.0f} HU)")

    rng = np.random.default_rng(args.seed)
    offsets = rng.normal(0.0, args.organ_offset_hu, 256).astype(np.float32)
    offsets[0] = 0.0
    for oid, (_, tissue, _) in organs.items():
        if media[tissue][0].lower() == "air":
            offsets[oid] = 0.0
    hu = (table + offsets)[ids]
    hu += np.float32(rng.normal(0.0, args.global_offset_hu))
    hu[ids == 0] = AIR_HU

    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if args.blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, sigma=args.blur_mm / spacing, mode="nearest", truncate=3.0)

    T, out_shape = output_grid(ids.shape, affine, args.spacing, args.z_range)
    out_affine = affine @ T
    ct = resample(hu, T, out_shape, order=1, cval=AIR_HU)
    ct = ct + rng.standard_normal(ct.shape, dtype=np.float32) * np.float32(args.noise_hu)
    np.clip(ct, HU_MIN, HU_MAX, out=ct)
    if args.dtype == "int16":
        ct = np.rint(ct)
    save(ct, out_affine, src, args.out, np.int16 if args.dtype == "int16" else np.float32)

    for lab_in, lab_out in args.resample_labels:
        lab_img = nib.load(lab_in)
        if lab_img.shape != src.shape or not np.allclose(lab_img.affine, affine, atol=1e-4):
            raise SystemExit(f"error: {lab_in} is not on the grid of {args.labels}")
        labels = np.asarray(lab_img.dataobj)
        out = resample(labels, T, out_shape, order=0, cval=0)
        save(out, out_affine, lab_img, Path(lab_out), labels.dtype)

    new_spacing = np.linalg.norm(out_affine[:3, :3], axis=0)
    z0 = (out_affine @ [0, 0, 0, 1])[2]
    z1 = (out_affine @ [0, 0, out_shape[2] - 1, 1])[2]
    print(f"{args.out}: {out_shape} @ {np.round(new_spacing, 3).tolist()} mm, slice z {min(z0, z1):.1f} .. "
          f"{max(z0, z1):.1f} mm, HU {ct.min():.0f} .. {ct.max():.0f}, seed {args.seed}, "
          f"{time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
