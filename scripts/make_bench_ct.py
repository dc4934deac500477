"""The 512 x 512 x 300 benchmark CT from a real one (docs/PERFORMANCE.md; not a test):

    /usr/bin/python3 scripts/make_bench_ct.py [--source ../shared/data/totalseg_subjects/s0009/ct.nii.gz]
                                              [--out build-data/bench/ct_512x512x300_s0009.nii.gz]

    /usr/bin/python3 scripts/make_bench_ct.py --fill --source ../shared/data/totalseg_example/example_ct.nii.gz \
                                              --out build-data/bench/ct_512x512x300_example.nii.gz

The geometry of the earlier synthetic benchmark CT (512 x 512 x 300 voxels of 1.04 x 1.04 x 1.5 mm: a 533 x 533 x
450 mm field of view, stored as int16, LPS direction diag(-1, -1, 1) in RAS, i.e. the usual axial DICOM layout) with a
real patient in it: the source CT resampled trilinearly onto the grid (same world position of its centre), air
(-1024 HU) around it. TotalSegmentator subject s0009: CC BY 4.0 (Wasserthal et al. 2023); the output stays under
build-data/ and is not shipped.
"""

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=str(REPO.parent / "shared/data/totalseg_subjects/s0009/ct.nii.gz"))
    ap.add_argument("--out", default=str(REPO / "build-data/bench/ct_512x512x300_s0009.nii.gz"))
    ap.add_argument("--fill", action="store_true",
                    help="choose the spacing so that the source's field of view fills the grid (in-plane: its wider "
                         "axis over 512 voxels, both axes; z: its length over 300 slices) instead of 1.04 x 1.04 x "
                         "1.5 mm: a patient who fills the field of view, as in most clinical CTs")
    args = ap.parse_args(argv)
    src = nib.load(args.source)
    hu = np.asarray(src.dataobj, dtype=np.float32)
    size = np.array([512, 512, 300])
    spacing = np.array([1.04, 1.04, 1.5])
    if args.fill:
        extent = np.array(hu.shape) * np.sqrt((src.affine[:3, :3] ** 2).sum(0))  # mm along the source's axes
        spacing = np.array([max(extent[:2]) / 512, max(extent[:2]) / 512, extent[2] / 300]).round(4)
    centre_world = src.affine @ np.append((np.array(hu.shape) - 1) / 2.0, 1.0)
    affine = np.diag(np.append(spacing * [-1, -1, 1], 1.0))  # RAS affine of an LPS-axial grid
    affine[:3, 3] = centre_world[:3] - affine[:3, :3] @ ((size - 1) / 2.0)
    # target voxel -> source continuous index, slice by slice (memory stays near one output volume)
    to_src = np.linalg.inv(src.affine) @ affine
    out = np.full(tuple(size), -1024, np.int16)
    ii, jj = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij")
    for k in range(size[2]):
        pts = to_src @ np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k), np.ones(ii.size)])
        inside = np.all((pts[:3] >= -0.5) & (pts[:3] <= (np.array(hu.shape)[:, None] - 0.5)), axis=0)
        if not inside.any():
            continue
        vals = ndimage.map_coordinates(hu, pts[:3, inside], order=1, mode="nearest")
        sl = out[:, :, k].ravel()
        sl[inside] = np.round(vals).astype(np.int16)
        out[:, :, k] = sl.reshape(size[0], size[1])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(out, affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    nib.save(img, args.out)
    print(f"{args.out}: {out.shape}, spacing {spacing.tolist()} mm, from {args.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
