"""Canonical orientation and area-weighted resampling onto the 3 mm grid.

Arrays are [k, j, i] with voxel axes i, j, k along LPS +x (patient left), +y (posterior), +z (superior): the
orientation src/preprocess.cpp gives the network, and the [D, H, W] layout of its input.
"""

import math

import nibabel as nib
import numpy as np
import scipy.sparse as sp

from .classes import NUM_OUT, SPACING_MM


def canonical(img):
    """NIfTI image -> (array [k, j, i] along LPS, spacing (si, sj, sk) mm, 4x4 RAS affine of that array in (i, j, k)
    voxel order). Oblique scans are snapped to the closest axes, as the C++ does."""
    data = np.asarray(img.dataobj)
    ornt = nib.orientations.io_orientation(img.affine)
    tr = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt(("L", "P", "S")))
    data = nib.orientations.apply_orientation(data, tr)
    affine = img.affine @ nib.orientations.inv_ornt_aff(tr, img.shape[:3])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return np.ascontiguousarray(data.transpose(2, 1, 0)), spacing, affine


def box_matrix(n_src, s_src, s_tgt=SPACING_MM):
    """Sparse [n_tgt, n_src]: the share of target cell t's covered length that source cell s covers (both grids start
    at the same outer corner; ceil(n_src * s_src / s_tgt) target cells, as ctarr's isotropic grid); rows sum to 1."""
    n_tgt = max(1, int(math.ceil(n_src * s_src / s_tgt - 1e-6)))
    rows, cols, vals = [], [], []
    for s in range(n_src):
        a, b = s * s_src, (s + 1) * s_src
        for t in range(int(a // s_tgt), min(n_tgt, int(math.ceil(b / s_tgt)))):
            overlap = min(b, (t + 1) * s_tgt) - max(a, t * s_tgt)
            if overlap > 1e-9:
                rows.append(t)
                cols.append(s)
                vals.append(overlap / s_tgt)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n_tgt, n_src), dtype=np.float32)
    # The last target cell may reach beyond the source: average over the part that is covered, so that an edge
    # voxel is not darkened towards 0 by the missing part.
    cover = np.asarray(m.sum(1)).ravel()
    return sp.diags(np.where(cover > 0, 1.0 / np.maximum(cover, 1e-12), 0.0).astype(np.float32)) @ m


class BoxResampler:
    """Area-weighted resampling of [k, j, i] arrays with spacing (si, sj, sk) onto the 3 mm grid."""

    def __init__(self, shape_kji, spacing_ijk, target=SPACING_MM):
        nk, nj, ni = shape_kji
        self.m = [box_matrix(nk, spacing_ijk[2], target), box_matrix(nj, spacing_ijk[1], target),
                  box_matrix(ni, spacing_ijk[0], target)]
        self.shape = tuple(m.shape[0] for m in self.m)

    def __call__(self, a):
        a = np.asarray(a, np.float32)
        for axis, m in enumerate(self.m):
            moved = np.moveaxis(a, axis, 0)
            rest = moved.shape[1:]
            out = m @ moved.reshape(moved.shape[0], -1)
            a = np.moveaxis(np.asarray(out).reshape((m.shape[0],) + rest), 0, axis)
        return np.ascontiguousarray(a)


def box_labels(labels, rs, num_labels=NUM_OUT):
    """Largest-fraction label per target voxel (background counts as a label)."""
    best = np.full(rs.shape, -1.0, np.float32)
    out = np.zeros(rs.shape, np.uint8)
    for c in range(num_labels):
        if c and not (labels == c).any():
            continue
        f = rs(labels == c)
        better = f > best
        best = np.where(better, f, best)
        out[better] = c
    return out


def top2_fractions(group_map, spacing, n_groups, labels, no_group=255):
    """Native tissue-group map [k,j,i] (no_group outside the body) and labels -> 3 mm (g1, g2, f1, f2, labels):
    per voxel the two groups covering most of it and their fractions (uint8, 255 = all), f1 + f2 = body fraction."""
    rs = BoxResampler(group_map.shape, spacing)
    shape = rs.shape
    best1 = np.zeros(shape, np.float32)
    best2 = np.zeros(shape, np.float32)
    g1 = np.zeros(shape, np.uint8)
    g2 = np.zeros(shape, np.uint8)
    total = np.zeros(shape, np.float32)
    for g in range(n_groups):
        if g == no_group or not (group_map == g).any():
            continue
        f = rs(group_map == g)
        total += f
        better1 = f > best1
        better2 = ~better1 & (f > best2)
        best2 = np.where(better1, best1, np.where(better2, f, best2))
        g2 = np.where(better1, g1, np.where(better2, np.uint8(g), g2))
        best1 = np.where(better1, f, best1)
        g1 = np.where(better1, np.uint8(g), g1)
    both = best1 + best2
    scale = np.where(both > 0, np.minimum(total, 1.0) / np.maximum(both, 1e-12), 0.0)
    f1 = np.rint(np.clip(best1 * scale, 0, 1) * 255).astype(np.uint8)
    f2 = np.rint(np.clip(best2 * scale, 0, 1) * 255).astype(np.uint8)
    f2 = np.minimum(f2, 255 - f1).astype(np.uint8)
    return g1, g2, f1, f2, box_labels(labels, rs)
