#!/usr/bin/env python3
"""Writes the bundled example: a synthetic CT rendered from the shipped atlas, and its 19-class label map.

The atlas's most likely class per voxel (where its mean mask >= 0.5) gets a typical HU value plus noise, on a
2.5 x 2.5 x 3 mm grid cut to the chest-abdomen-pelvis. The voxel array is then rotated by 90 degrees in-plane while
the header is left unchanged: the header lies, and ctarr's orientation search has to notice.

Usage: /usr/bin/python3 scripts/make_example.py OUT_DIR   (needs python3-numpy and python3-nibabel)
Writes OUT_DIR/example_ct.nii.gz (int16 HU) and OUT_DIR/example_seg.nii.gz (uint8, labels 1..19).
"""
import os
import sys

import nibabel as nib
import numpy as np

HU = np.array([-1000, 900, 700, 700, 700, 700, 700, 600, 700, 700, 700,  # background, bones
               35, -850, -850, 40, 60, 50, 30, 30, 10], dtype=np.float32)  # brain .. bladder


def main(out_dir):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    atlas = nib.load(os.path.join(repo, "atlas", "atlas.nii.gz"))
    masks = np.asarray(atlas.dataobj, dtype=np.float32)  # x, y, z, class
    labels = np.where(masks.max(axis=3) >= 0.5, masks.argmax(axis=3) + 1, 0).astype(np.uint8)

    # Chest-abdomen-pelvis: from the bladder's bottom to the lungs' top (labels 19 and 12/13).
    z_of = lambda ls: np.nonzero(np.isin(labels, ls).any(axis=(0, 1)))[0]
    z0, z1 = max(z_of([19]).min() - 5, 0), min(z_of([12, 13]).max() + 5, labels.shape[2] - 1)
    labels = labels[:, :, z0:z1 + 1]
    affine = atlas.affine.copy()
    affine[:3, 3] += affine[:3, 2] * z0

    # Nearest-neighbour resampling to 2.5 x 2.5 x 3 mm.
    spacing = np.abs(np.diag(affine)[:3])
    target = np.array([2.5, 2.5, 3.0])
    shape = np.floor(np.array(labels.shape) * spacing / target).astype(int)
    idx = [np.minimum(((np.arange(n) + 0.5) * t / s).astype(int), m - 1)
           for n, t, s, m in zip(shape, target, spacing, labels.shape)]
    labels = labels[np.ix_(*idx)]
    affine[:3, :3] = affine[:3, :3] @ np.diag(target / spacing)
    affine[:3, 3] += affine[:3, :3] @ (0.5 * (spacing / target) - 0.5)

    # The header lies: rotate the voxel array by 90 degrees in-plane, keep the header.
    labels = np.ascontiguousarray(np.rot90(labels, k=1, axes=(0, 1)))
    rng = np.random.default_rng(0)
    ct = HU[labels] + rng.normal(0.0, 20.0, labels.shape).astype(np.float32)
    ct = np.clip(np.round(ct), -1024, 3071).astype(np.int16)

    os.makedirs(out_dir, exist_ok=True)
    for name, data in (("example_ct.nii.gz", ct), ("example_seg.nii.gz", labels)):
        img = nib.Nifti1Image(data, affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        nib.save(img, os.path.join(out_dir, name))
    print(f"wrote {out_dir}/example_ct.nii.gz and example_seg.nii.gz, shape {labels.shape}, "
          f"voxel array rotated 90 degrees against its header")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
