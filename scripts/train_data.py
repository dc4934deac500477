"""Training data for the ctarr U-Net (scripts/train.py): 3 mm sources, patch sampling and augmentation.

Every source is held once, on a 3 mm grid in ctarr's canonical orientation (the one src/preprocess.cpp gives
the network: voxel axes i, j, k along LPS +x (patient left), +y (posterior), +z (superior)), as arrays indexed
[k, j, i] -- exactly the [D, H, W] layout of the network input. Two kinds of source:

  render   a label map to render CTs from (ICRP 110 AM/AF phantoms, or the built-in synthetic phantom): per
           3 mm voxel the two tissue groups (TISSUE_GROUPS) covering most of it and their fractions (box
           integration from the native grid, so partial volume survives the 2.1 x 2.1 x 8 mm -> 3 mm step),
           plus the 19-class label (largest-fraction class). HU are assigned per sample (random per-group
           values, contrast phase), so every patch is a different "scan".
  ct       a real CT in HU (int16) with its 19-class labels and the set of classes that are labelled in it
           (TotalSegmentator example; a TotalSegmentator dataset copy via --data-totalseg).

Preparation (native -> 3 mm) is done once and cached as .npy (memory-mapped) under the cache folder.

Patch sampling (PatchSampler.sample): a patch centre (2/3 of the time on a voxel of a random labelled class,
else anywhere in the body), a random affine (anisotropic scaling, in-plane rotation, 90/180/270 degrees,
z-flip, small tilt) mapping the 64^3 output patch into the source, `grid_sample` on the crop the patch touches
(linear for HU, nearest for labels), then intensity augmentation (render sources: HU per tissue group and
contrast phase, lungs -950..-600; all: blur, Gaussian + correlated noise, smooth bias field), random fields of
view (in-plane reconstruction circle, z end of the scan) and the three HU windows. Outside the source volume the
patch is -1024 HU, which windows to 0 in every channel: the zero padding of the C++ sliding window.
"""

import glob
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.sparse as sp
from scipy import ndimage
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ctarr_labels as cl  # noqa: E402
from ctarr_unet import WINDOWS_HU  # noqa: E402

SPACING = 3.0
NUM_OUT = cl.NUM_CLASSES + 1
PAD_HU = -1024.0     # outside the scan: windows to 0 in all three channels (= C++ zero padding)
AIR_HU = -1000.0     # outside the body, inside the scan

# ---- tissue groups and their HU per contrast phase -------------------------------------------------------------
# (name, {phase: (low, high)} or a single (low, high) for all phases). Values are rough literature ranges for
# 120 kVp CT, wide on purpose (domain randomisation), not a physical model.
PHASES = ("native", "arterial", "portal", "delayed")
PHASE_P = (0.3, 0.2, 0.35, 0.15)
TISSUE_GROUPS = [
    ("air_inside", (-1000, -900)),
    ("lung", (-950, -600)),
    ("fat", (-130, -60)),
    ("muscle", (30, 65)),
    ("blood", {"native": (30, 55), "arterial": (180, 450), "portal": (120, 220), "delayed": (70, 130)}),
    ("heart_wall", {"native": (30, 55), "arterial": (80, 160), "portal": (80, 140), "delayed": (60, 110)}),
    ("liver", {"native": (40, 70), "arterial": (55, 95), "portal": (85, 150), "delayed": (70, 110)}),
    ("spleen", {"native": (35, 55), "arterial": (90, 170), "portal": (95, 150), "delayed": (70, 110)}),
    ("kidney_cortex", {"native": (25, 45), "arterial": (140, 300), "portal": (130, 230), "delayed": (100, 180)}),
    ("kidney_medulla", {"native": (25, 45), "arterial": (50, 110), "portal": (120, 220), "delayed": (110, 200)}),
    ("kidney_pelvis", {"native": (0, 25), "arterial": (0, 30), "portal": (10, 60), "delayed": (150, 900)}),
    ("urine", {"native": (-5, 25), "arterial": (-5, 25), "portal": (-5, 30), "delayed": (0, 600)}),
    ("bladder_wall", (25, 55)),
    ("cortical_bone", (700, 1600)),
    ("spongiosa_axial", (120, 300)),   # spine, sacrum, sternum
    ("spongiosa_other", (150, 400)),
    ("marrow", (-100, 60)),
    ("teeth", (1500, 2500)),
    ("brain", (20, 45)),
    ("gi_contents", (-20, 50)),        # + oral contrast / gas, see sample_group_hu
    ("gi_wall", {"native": (25, 50), "arterial": (50, 100), "portal": (60, 120), "delayed": (50, 90)}),
    ("pancreas", {"native": (30, 50), "arterial": (90, 150), "portal": (80, 130), "delayed": (60, 100)}),
    ("cartilage", (60, 180)),
    ("skin", (20, 100)),
    ("soft_other", {"native": (20, 45), "arterial": (30, 80), "portal": (40, 90), "delayed": (30, 70)}),
]
GROUP = {name: g for g, (name, _) in enumerate(TISSUE_GROUPS)}
NO_GROUP = 255


def icrp_tissue_group(organ_name, tissue_name):
    """Tissue group index of an ICRP 110 organ (name from *_organs.dat, tissue name from *_media.dat)."""
    n, t = organ_name.lower(), tissue_name.lower()
    if t == "air":
        return GROUP["air_inside"]
    if t.startswith("lung tissue"):
        return GROUP["lung"]
    if t.startswith("adipose"):
        return GROUP["fat"]
    if t == "muscle tissue":
        return GROUP["muscle"]
    if t == "blood":
        return GROUP["blood"]
    if n == "heart wall":
        return GROUP["heart_wall"]
    if n == "liver":
        return GROUP["liver"]
    if n == "spleen":
        return GROUP["spleen"]
    if n.startswith("kidney"):
        return GROUP["kidney_" + n.split(",")[-1].strip()]
    if n == "urinary bladder contents":
        return GROUP["urine"]
    if n == "urinary bladder wall":
        return GROUP["bladder_wall"]
    if t == "mineral bone":
        return GROUP["cortical_bone"]
    if "spongiosa" in t:
        axial = any(n.startswith(b) for b in ("cervical spine", "thoracic spine", "lumbar spine", "sacrum", "sternum"))
        return GROUP["spongiosa_axial" if axial else "spongiosa_other"]
    if "medullary cavity" in t:
        return GROUP["marrow"]
    if t == "teeth":
        return GROUP["teeth"]
    if t == "brain":
        return GROUP["brain"]
    if "contents" in t:
        return GROUP["gi_contents"]
    if t in ("stomach", "small intestine", "large intestine", "oesophagus"):
        return GROUP["gi_wall"]
    if t == "pancreas":
        return GROUP["pancreas"]
    if t == "cartilage":
        return GROUP["cartilage"]
    if t == "skin":
        return GROUP["skin"]
    return GROUP["soft_other"]


def sample_group_hu(rng, phase):
    """HU per tissue group for one synthetic scan (float32 [len(TISSUE_GROUPS)])."""
    hu = np.zeros(len(TISSUE_GROUPS), np.float32)
    for g, (name, spec) in enumerate(TISSUE_GROUPS):
        lo, hi = spec[phase] if isinstance(spec, dict) else spec
        hu[g] = rng.uniform(lo, hi)
    if phase == "delayed" and rng.random() < 0.5:  # urine without excreted contrast yet
        hu[GROUP["urine"]] = rng.uniform(-5, 25)
    r = rng.random()
    if r < 0.2:
        hu[GROUP["gi_contents"]] = rng.uniform(150, 500)   # positive oral contrast
    elif r < 0.3:
        hu[GROUP["gi_contents"]] = rng.uniform(-950, -400)  # gas
    hu += rng.normal(0.0, 10.0)  # calibration offset of the whole scan
    hu[GROUP["air_inside"]] = min(hu[GROUP["air_inside"]], -880.0)
    return hu


# ---- geometry: canonical orientation and 3 mm box resampling ----------------------------------------------------

def canonical(img):
    """NIfTI image -> (array [k, j, i] with i, j, k along LPS +x, +y, +z, spacing (si, sj, sk) mm, 4x4 RAS affine of
    the canonical array in (i, j, k) voxel order). Oblique scans are snapped to the closest axes (as C++ does)."""
    data = np.asarray(img.dataobj)
    ornt = nib.orientations.io_orientation(img.affine)
    target = nib.orientations.axcodes2ornt(("L", "P", "S"))
    tr = nib.orientations.ornt_transform(ornt, target)
    data = nib.orientations.apply_orientation(data, tr)
    affine = img.affine @ nib.orientations.inv_ornt_aff(tr, img.shape[:3])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return np.ascontiguousarray(data.transpose(2, 1, 0)), spacing, affine


def box_matrix(n_src, s_src, s_tgt=SPACING):
    """Sparse [n_tgt, n_src]: fraction of target cell t covered by source cell s (both grids start at the same
    outer corner; target count ceil(n_src * s_src / s_tgt), as ctarr's isotropic_grid)."""
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
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_tgt, n_src), dtype=np.float32)


class BoxResampler:
    """Area-weighted resampling of [k, j, i] arrays with spacing (si, sj, sk) onto the 3 mm grid."""

    def __init__(self, shape_kji, spacing_ijk):
        nk, nj, ni = shape_kji
        self.m = [box_matrix(nk, spacing_ijk[2]), box_matrix(nj, spacing_ijk[1]), box_matrix(ni, spacing_ijk[0])]
        self.shape = tuple(m.shape[0] for m in self.m)

    def __call__(self, a):
        a = np.asarray(a, np.float32)
        for axis, m in enumerate(self.m):
            moved = np.moveaxis(a, axis, 0)
            rest = moved.shape[1:]
            out = m @ moved.reshape(moved.shape[0], -1)
            a = np.moveaxis(np.asarray(out).reshape((m.shape[0],) + rest), 0, axis)
        return np.ascontiguousarray(a)


def top2_fractions(group_map, spacing, n_groups, labels19):
    """Native group map [k,j,i] (NO_GROUP outside the body) and labels -> 3 mm (g1, g2, f1, f2, labels3mm).
    f1 + f2 = the body fraction of the voxel (groups beyond the second get folded into the first two)."""
    rs = BoxResampler(group_map.shape, spacing)
    shape = rs.shape
    best1 = np.zeros(shape, np.float32)
    best2 = np.zeros(shape, np.float32)
    g1 = np.zeros(shape, np.uint8)
    g2 = np.zeros(shape, np.uint8)
    total = np.zeros(shape, np.float32)
    for g in range(n_groups):
        if not (group_map == g).any():
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
    return g1, g2, f1, f2, box_labels(labels19, rs)


def box_labels(labels, rs):
    """Largest-fraction label per 3 mm voxel (background counts as a label)."""
    best = np.full(rs.shape, -1.0, np.float32)
    out = np.zeros(rs.shape, np.uint8)
    for c in range(NUM_OUT):
        if c and not (labels == c).any():
            continue
        f = rs(labels == c)
        better = f > best
        best = np.where(better, f, best)
        out[better] = c
    return out


# ---- sources ----------------------------------------------------------------------------------------------------

def _class_points(labels, rng, per_class=3000):
    """{class: int16 [n, 3] voxel (k, j, i) samples} for the classes present."""
    pts = {}
    for c in range(1, NUM_OUT):
        idx = np.flatnonzero(labels.ravel() == c)
        if idx.size == 0:
            continue
        if idx.size > per_class:
            idx = rng.choice(idx, per_class, replace=False)
        pts[c] = np.stack(np.unravel_index(idx, labels.shape), 1).astype(np.int32)
    return pts


class Source:
    """One 3 mm training volume. kind 'render': g1, g2, f1, f2 (top-2 tissue groups); kind 'ct': hu (int16)."""

    def __init__(self, name, kind, arrays, labels, labelled, provenance, weight=1.0):
        self.name, self.kind, self.arrays, self.labels = name, kind, arrays, labels
        self.labelled = np.asarray(labelled, bool)
        self.labelled[0] = True
        self.provenance = provenance
        self.weight = weight
        rng = np.random.default_rng(0)
        self.points = _class_points(np.asarray(labels), rng)
        if kind == "render":
            body = np.asarray(arrays["f1"]) > 127
        else:
            body = np.asarray(arrays["hu"]) > -500
        idx = np.flatnonzero(body.ravel())
        if idx.size == 0:
            idx = np.arange(body.size)
        idx = rng.choice(idx, min(idx.size, 20000), replace=False)
        self.body_points = np.stack(np.unravel_index(idx, body.shape), 1).astype(np.int32)

    @property
    def shape(self):
        return self.labels.shape

    def present_classes(self):
        return sorted(self.points)


def _save_cache(folder, arrays, meta):
    folder.mkdir(parents=True, exist_ok=True)
    for k, v in arrays.items():
        np.save(folder / f"{k}.npy", v)
    with open(folder / "meta.json", "w") as f:
        json.dump(meta, f, indent=1)


def _load_cache(folder, keys, key_hash):
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("key") != key_hash or not all((folder / f"{k}.npy").exists() for k in keys):
        return None
    return {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in keys}, meta


def _file_key(*paths, extra=""):
    h = hashlib.sha256(extra.encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{Path(p).resolve()}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


CACHE_VERSION = "v1"


def icrp_source(data_dir, sex, labels19_dir, cache_dir):
    """ICRP 110 AM/AF phantom as a render source. Needs scripts/prepare_label_maps.py's output in labels19_dir."""
    data_dir, labels19_dir, cache_dir = Path(data_dir), Path(labels19_dir), Path(cache_dir)
    organs_nii = data_dir / "icrp110" / f"ICRP110_{sex}_organs.nii.gz"
    organs_dat = data_dir / "icrp110" / f"{sex}_organs.dat"
    media_dat = data_dir / "icrp110" / f"{sex}_media.dat"
    lab_nii = labels19_dir / f"icrp110_{sex}_labels19.nii.gz"
    if not lab_nii.exists():
        raise FileNotFoundError(f"{lab_nii} not found: run /usr/bin/python3 scripts/prepare_label_maps.py "
                                f"--out {labels19_dir}")
    key = _file_key(organs_nii, lab_nii, organs_dat, extra=CACHE_VERSION + json.dumps(TISSUE_GROUPS))
    folder = cache_dir / f"icrp110_{sex}"
    keys = ("g1", "g2", "f1", "f2", "labels")
    cached = _load_cache(folder, keys, key)
    if cached is None:
        organs = cl.read_icrp110_organs(organs_dat)
        media = cl.read_icrp110_media(media_dat)
        lut = np.full(256, GROUP["soft_other"], np.uint8)  # ids not in the table (141: skin layer) -> soft tissue
        lut[0] = NO_GROUP
        for oid, (name, tissue, _) in organs.items():
            lut[oid] = icrp_tissue_group(name, media[tissue][0])
        ids_img = nib.load(str(organs_nii))
        ids, spacing, _ = canonical(ids_img)
        lab, spacing2, _ = canonical(nib.load(str(lab_nii)))
        assert lab.shape == ids.shape and np.allclose(spacing, spacing2, atol=1e-3)
        groups = lut[ids.astype(np.int64)]
        g1, g2, f1, f2, lab3 = top2_fractions(groups, spacing, len(TISSUE_GROUPS), lab)
        arrays = {"g1": g1, "g2": g2, "f1": f1, "f2": f2, "labels": lab3}
        _save_cache(folder, arrays, {"key": key, "source": str(organs_nii), "labels": str(lab_nii),
                                     "native_spacing_mm": [float(s) for s in spacing]})
        cached = _load_cache(folder, keys, key)
    arrays, meta = cached
    labels = arrays.pop("labels")
    return Source(f"icrp110_{sex}", "render", arrays, labels, np.ones(NUM_OUT, bool),
                  {"data": f"ICRP Publication 110 {sex} phantom (icrp110/ICRP110_{sex}_organs.nii.gz), rendered",
                   "licence": "ICRP, research use (Geant4 ICRP110 example)"})


def ct_source_from_arrays(name, hu, labels, labelled, provenance, weight=1.0):
    return Source(name, "ct", {"hu": hu}, labels, labelled, provenance, weight)


def prepare_ct(ct_img, label_kji_native, cache_folder, key, extra_meta):
    """Real CT (NIfTI) + native-grid [k,j,i] labels -> cached 3 mm (hu int16, labels uint8)."""
    keys = ("hu", "labels")
    cached = _load_cache(cache_folder, keys, key)
    if cached is not None:
        return cached
    hu, spacing, _ = canonical(ct_img)
    hu = np.asarray(hu, np.float32)  # nibabel's dataobj has applied scl_slope / scl_inter
    if np.allclose(spacing, SPACING, atol=1e-3):
        hu3, lab3 = hu, np.asarray(label_kji_native, np.uint8)
    else:
        rs = BoxResampler(hu.shape, spacing)
        hu3 = rs(hu)
        lab3 = box_labels(label_kji_native, rs)
    hu3 = np.clip(np.rint(hu3), -1024, 3071).astype(np.int16)
    _save_cache(cache_folder, {"hu": hu3, "labels": lab3}, dict(key=key, native_spacing_mm=[float(s) for s in spacing],
                                                                **extra_meta))
    return _load_cache(cache_folder, keys, key)


def totalseg_example_source(data_dir, cache_dir, weight=1.0):
    """TotalSegmentator's example CT (3 mm) with its model-made v2 segmentation mapped to 19 classes. Labelled =
    the classes present (no skull, C-spine, sternum, brain, heart: those are masked out of the loss)."""
    folder = Path(data_dir) / "totalseg_example"
    ct_path, seg_path = folder / "example_ct.nii.gz", folder / "example_seg_fast_force_split.nii.gz"
    key = _file_key(ct_path, seg_path, extra=CACHE_VERSION)
    seg_img = nib.load(str(seg_path))
    seg, _, _ = canonical(seg_img)
    lut = np.array(cl.totalseg_lookup(cl.totalseg_names(2)), np.uint8)
    lab = lut[seg.astype(np.int64)]
    (arrays, meta) = prepare_ct(nib.load(str(ct_path)), lab, Path(cache_dir) / "totalseg_example", key,
                                {"source": str(ct_path)})
    labels = arrays["labels"]
    labelled = np.zeros(NUM_OUT, bool)
    labelled[np.unique(np.asarray(labels))] = True
    return ct_source_from_arrays("totalseg_example", arrays["hu"], labels, labelled,
                                 {"data": "TotalSegmentator example CT (totalseg_example/example_ct.nii.gz, 3 mm) with "
                                          "its model-made segmentation example_seg_fast_force_split.nii.gz",
                                  "licence": "CC BY 4.0 (TotalSegmentator)"}, weight)


def totalseg_subject_labels(seg_dir, shape_native_img):
    """TotalSegmentator dataset subject: segmentations/<structure>.nii.gz masks -> (labels [k,j,i] native,
    labelled bool[20]). A class counts as labelled when at least one of its mask files exists (empty or not)."""
    labels = None
    labelled = np.zeros(NUM_OUT, bool)
    for path in sorted(glob.glob(os.path.join(seg_dir, "*.nii.gz"))):
        name = os.path.basename(path)[:-len(".nii.gz")]
        c = cl.label_for_totalseg_name(name)
        if c is None:
            continue
        labelled[c] = True
        img = nib.load(path)
        if img.shape[:3] != shape_native_img.shape[:3] or not np.allclose(img.affine, shape_native_img.affine,
                                                                          atol=1e-3):
            raise ValueError(f"{path}: not on the grid of the subject's ct.nii.gz")
        mask, _, _ = canonical(img)
        if labels is None:
            labels = np.zeros(mask.shape, np.uint8)
        labels[mask > 0] = c
    if labels is None:
        raise ValueError(f"{seg_dir}: no TotalSegmentator structure masks that map to ctarr classes")
    return labels, labelled


def _prepare_totalseg_subject(args):
    subject_dir, cache_dir = args
    subject_dir = Path(subject_dir)
    ct_path = subject_dir / "ct.nii.gz"
    seg_dir = subject_dir / "segmentations"
    masks = sorted(glob.glob(str(seg_dir / "*.nii.gz")))
    key = _file_key(ct_path, *masks, extra=CACHE_VERSION)
    folder = Path(cache_dir) / "totalseg" / subject_dir.name
    cached = _load_cache(folder, ("hu", "labels"), key)
    if cached is None:
        ct_img = nib.load(str(ct_path))
        labels, labelled = totalseg_subject_labels(str(seg_dir), ct_img)
        prepare_ct(ct_img, labels, folder, key, {"source": str(ct_path), "labelled": labelled.tolist()})
    return str(folder)


def totalseg_dataset_sources(root, cache_dir, workers=1, limit=None, log=print):
    """A TotalSegmentator dataset copy (root/s0000/ct.nii.gz + root/s0000/segmentations/*.nii.gz, CC BY 4.0) ->
    ct sources, prepared (3 mm, 19 classes) in parallel and cached; the arrays stay memory-mapped."""
    subjects = sorted(d for d in glob.glob(os.path.join(root, "*")) if os.path.isfile(os.path.join(d, "ct.nii.gz"))
                      and os.path.isdir(os.path.join(d, "segmentations")))
    if limit:
        subjects = subjects[:limit]
    if not subjects:
        raise FileNotFoundError(f"{root}: no subject folders with ct.nii.gz and segmentations/")
    jobs = [(s, str(cache_dir)) for s in subjects]
    log(f"TotalSegmentator dataset {root}: {len(subjects)} subjects, preparing 3 mm copies in {cache_dir} "
        f"({workers} workers; cached after the first run)")
    if workers > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(workers) as pool:
            folders = pool.map(_prepare_totalseg_subject, jobs, chunksize=4)
    else:
        folders = [_prepare_totalseg_subject(j) for j in jobs]
    sources = []
    for s, folder in zip(subjects, folders):
        with open(Path(folder) / "meta.json") as f:
            meta = json.load(f)
        arrays = {k: np.load(Path(folder) / f"{k}.npy", mmap_mode="r") for k in ("hu", "labels")}
        sources.append(ct_source_from_arrays(f"totalseg/{os.path.basename(s)}", arrays["hu"], arrays["labels"],
                                             np.array(meta["labelled"], bool),
                                             {"data": f"TotalSegmentator dataset subject {os.path.basename(s)}",
                                              "licence": "CC BY 4.0 (TotalSegmentator)"}))
    return sources


# ---- synthetic phantom (no ../shared/data) ------------------------------------------------------------------------

def synthetic_phantom(shape=(120, 64, 96), seed=0):
    """Ellipsoid "body" at 3 mm with all 19 classes, as (tissue group map [k,j,i], labels [k,j,i]). Crude, for the
    smoke run and tests where ../shared/data is absent. Axes: i patient left, j posterior, k superior."""
    nk, nj, ni = shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    groups = np.full(shape, NO_GROUP, np.uint8)
    labels = np.zeros(shape, np.uint8)
    cx, cy = ni / 2, nj / 2
    L = cl.LABEL

    def ell(c, r):
        return ((i - c[0]) / r[0]) ** 2 + ((j - c[1]) / r[1]) ** 2 + ((k - c[2]) / r[2]) ** 2 <= 1

    def put(mask, group, label=0):
        groups[mask] = GROUP[group]
        if label:
            labels[mask] = label
        else:
            labels[mask] = 0

    body = (((i - cx) / (ni * 0.45)) ** 2 + ((j - cy) / (nj * 0.42)) ** 2 <= 1) & (k < nk * 0.78)
    put(body, "fat")
    put((((i - cx) / (ni * 0.40)) ** 2 + ((j - cy) / (nj * 0.36)) ** 2 <= 1) & (k < nk * 0.78), "muscle")
    put(ell((cx, cy, nk * 0.88), (ni * 0.2, nj * 0.3, nk * 0.1)), "cortical_bone", L["skull"])
    put(ell((cx, cy, nk * 0.88), (ni * 0.17, nj * 0.26, nk * 0.085)), "brain", L["brain"])
    spine_x, spine_y = cx, cy + nj * 0.22
    for lab, z0, z1 in ((L["vertebrae_cervical"], 0.70, 0.78), (L["vertebrae_thoracic"], 0.45, 0.70),
                        (L["vertebrae_lumbar"], 0.30, 0.45), (L["sacrum"], 0.22, 0.30)):
        m = (((i - spine_x) / 4) ** 2 + ((j - spine_y) / 4) ** 2 <= 1) & (k >= nk * z0) & (k < nk * z1)
        put(m, "spongiosa_axial", lab)
    put(ell((cx - ni * 0.17, cy, nk * 0.58), (ni * 0.13, nj * 0.28, nk * 0.11)), "lung", L["lung_right"])
    put(ell((cx + ni * 0.17, cy, nk * 0.58), (ni * 0.13, nj * 0.28, nk * 0.11)), "lung", L["lung_left"])
    put(ell((cx + ni * 0.05, cy - nj * 0.1, nk * 0.52), (ni * 0.1, nj * 0.14, nk * 0.06)), "heart_wall", L["heart"])
    put(ell((cx, cy - nj * 0.36, nk * 0.56), (2, 2, nk * 0.08)), "cortical_bone", L["sternum"])
    shell = (((i - cx) / (ni * 0.38)) ** 2 + ((j - cy) / (nj * 0.34)) ** 2)
    ribs = (shell > 0.85) & (shell <= 1) & (k > nk * 0.45) & (k < nk * 0.68) & (np.mod(k, 6) < 2)
    put(ribs & (i >= cx), "cortical_bone", L["ribs_left"])
    put(ribs & (i < cx), "cortical_bone", L["ribs_right"])
    put(ell((cx - ni * 0.15, cy - nj * 0.05, nk * 0.42), (ni * 0.16, nj * 0.2, nk * 0.06)), "liver", L["liver"])
    put(ell((cx + ni * 0.2, cy + nj * 0.1, nk * 0.43), (ni * 0.06, nj * 0.08, nk * 0.04)), "spleen", L["spleen"])
    put(ell((cx + ni * 0.12, cy + nj * 0.18, nk * 0.37), (ni * 0.04, nj * 0.05, nk * 0.04)), "kidney_cortex",
        L["kidney_left"])
    put(ell((cx - ni * 0.12, cy + nj * 0.18, nk * 0.36), (ni * 0.04, nj * 0.05, nk * 0.04)), "kidney_cortex",
        L["kidney_right"])
    put(ell((cx + ni * 0.18, cy, nk * 0.24), (ni * 0.09, nj * 0.1, nk * 0.05)), "spongiosa_other", L["hip_left"])
    put(ell((cx - ni * 0.18, cy, nk * 0.24), (ni * 0.09, nj * 0.1, nk * 0.05)), "spongiosa_other", L["hip_right"])
    put(ell((cx, cy - nj * 0.15, nk * 0.2), (ni * 0.06, nj * 0.06, nk * 0.04)), "urine", L["urinary_bladder"])
    put(ell((cx - ni * 0.02, cy - nj * 0.15, nk * 0.33), (ni * 0.1, nj * 0.08, nk * 0.05)), "gi_contents")
    return groups, labels


def synthetic_source(seed=0):
    groups, labels = synthetic_phantom(seed=seed)
    g1 = np.where(groups == NO_GROUP, 0, groups).astype(np.uint8)
    f1 = np.where(groups == NO_GROUP, 0, 255).astype(np.uint8)
    zeros = np.zeros_like(g1)
    return Source("synthetic_phantom", "render", {"g1": g1, "g2": zeros, "f1": f1, "f2": zeros}, labels,
                  np.ones(NUM_OUT, bool), {"data": "built-in synthetic ellipsoid phantom (scripts/train_data.py)",
                                           "licence": "ctarr"})


def write_synthetic_totalseg(root, subjects=2, seed=0):
    """A tiny TotalSegmentator-style dataset (s0000/ct.nii.gz + s0000/segmentations/<name>.nii.gz, RAS affines,
    1.5 x 1.5 x 2.5 mm) from the synthetic phantom, for testing the --data-totalseg loader."""
    rng = np.random.default_rng(seed)
    groups, labels = synthetic_phantom(shape=(72, 40, 56))
    names = {cl.LABEL[n]: n for n in cl.CLASS_NAMES}
    names[cl.LABEL["vertebrae_thoracic"]] = "vertebrae_T5"
    names[cl.LABEL["ribs_left"]] = "rib_left_3"
    # a TotalSegmentator v1-like subject has no skull / sternum files: those classes must come out unlabelled
    for s in range(subjects):
        hu_table = sample_group_hu(rng, "portal")
        hu = np.where(groups == NO_GROUP, AIR_HU, hu_table[np.minimum(groups, len(hu_table) - 1)])
        hu = hu + rng.normal(0, 10, hu.shape)
        # [k, j, i] LPS -> NIfTI array [x, y, z] in RAS order (i and j reversed), spacing 3 mm -> upsample x2 in-plane
        arr = np.flip(hu.transpose(2, 1, 0), axis=(0, 1))
        lab = np.flip(labels.transpose(2, 1, 0), axis=(0, 1))
        arr = np.repeat(np.repeat(arr, 2, 0), 2, 1)
        lab = np.repeat(np.repeat(lab, 2, 0), 2, 1)
        affine = np.diag([1.5, 1.5, 3.0, 1.0])
        d = Path(root) / f"s{s:04d}"
        (d / "segmentations").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.rint(arr).astype(np.int16), affine), str(d / "ct.nii.gz"))
        for c, n in names.items():
            if s == 1 and n in ("skull", "sternum"):
                continue
            nib.save(nib.Nifti1Image((lab == c).astype(np.uint8), affine), str(d / "segmentations" / f"{n}.nii.gz"))
        nib.save(nib.Nifti1Image(np.zeros(arr.shape, np.uint8), affine), str(d / "segmentations" / "aorta.nii.gz"))
    return str(root)


# ---- patch sampling and augmentation -----------------------------------------------------------------------------

def window(hu):
    """HU tensor [...] -> [3, ...] in [0, 1] (ctarr's three windows)."""
    return torch.stack([((hu - lo) / (hi - lo)).clamp_(0.0, 1.0) for lo, hi in WINDOWS_HU])


def blur3d(vol, sigmas):
    """Separable Gaussian blur of a [D, H, W] tensor with per-axis sigma (voxels), nearest-edge borders."""
    a = vol.numpy()
    for axis, s in enumerate(sigmas):
        if s >= 0.2:
            a = ndimage.gaussian_filter1d(a, s, axis=axis, mode="nearest", truncate=3.0)
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


def rotation(axis, angle):
    c, s = math.cos(angle), math.sin(angle)
    a, b = [(1, 2), (0, 2), (0, 1)][axis]
    m = np.eye(3)
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


class AugmentConfig:
    def __init__(self, **kw):
        self.zoom = (0.8, 1.25)          # per-axis, log-uniform, independent (anisotropic)
        self.rot_max_deg = 45.0           # in-plane rotation, uniform in +-rot_max_deg with p_rot
        self.p_rot = 0.5
        self.small_rot_deg = 10.0         # otherwise +-small_rot_deg
        self.p_rot90 = 0.25               # 90/180/270 degrees in-plane (prone, decubitus)
        self.p_zflip = 0.1
        self.tilt_deg = 5.0               # out-of-plane tilt
        self.p_fg = 0.67                  # patch centre on a labelled class voxel
        self.p_fov_circle = 0.2
        self.p_fov_z = 0.15
        self.noise_sd = (0.0, 30.0)
        self.corr_noise_sd = (0.0, 25.0)
        self.blur_sigma = (0.0, 1.0)      # voxels (3 mm)
        self.bias_sd = (0.0, 30.0)        # HU, smooth additive field
        self.real_intensity_p = 0.5       # real CTs: mild intensity augmentation with this probability
        for k, v in kw.items():
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
                                  "native/arterial/portal/delayed (p 0.3/0.2/0.35/0.15) for liver, spleen, kidneys "
                                  "(cortex/medulla/pelvis), blood/heart, pancreas, GI wall, bladder; lungs -950..-600; "
                                  "oral contrast / bowel gas; global offset N(0, 10 HU)",
            "noise": f"Gaussian SD U{self.noise_sd} HU + correlated (blurred) SD U{self.corr_noise_sd} HU",
            "blur": f"Gaussian sigma U{self.blur_sigma} voxels per axis",
            "bias_field": f"smooth additive field SD U{self.bias_sd} HU",
            "real_ct": f"same geometric augmentation; milder intensity augmentation with p {self.real_intensity_p}",
        }


class PatchSampler:
    """Draws (input [3,P,P,P], labels [P,P,P] int64, labelled [20] bool) from weighted sources."""

    def __init__(self, sources, patch=64, aug=None, p_real=0.5, device="cpu"):
        self.sources = sources
        self.patch = patch
        self.aug = aug or AugmentConfig()
        self.device = device
        render = [s for s in sources if s.kind == "render"]
        real = [s for s in sources if s.kind == "ct"]
        if not render:
            p_real = 1.0
        if not real:
            p_real = 0.0
        self.groups = [(render, 1.0 - p_real), (real, p_real)]
        self.p_real = p_real
        p = (np.arange(patch) - (patch - 1) / 2.0).astype(np.float32)
        kk, jj, ii = np.meshgrid(p, p, p, indexing="ij")
        self.u = torch.from_numpy(np.stack([ii, jj, kk], -1).reshape(-1, 3))  # (i, j, k) offsets, [P^3, 3]

    def pick_source(self, rng):
        r = rng.random()
        sources = self.groups[0][0] if (r >= self.p_real and self.groups[0][0]) else self.groups[1][0]
        w = np.array([s.weight for s in sources], float)
        return sources[rng.choice(len(sources), p=w / w.sum())]

    def random_affine(self, rng):
        a = self.aug
        zoom = np.exp(rng.uniform(math.log(a.zoom[0]), math.log(a.zoom[1]), 3))
        if rng.random() < a.p_rot:
            ang = rng.uniform(-a.rot_max_deg, a.rot_max_deg)
        else:
            ang = rng.uniform(-a.small_rot_deg, a.small_rot_deg)
        if rng.random() < a.p_rot90:
            ang += 90.0 * rng.integers(1, 4)
        m = rotation(2, math.radians(ang))  # about k: rotates (i, j)
        m = m @ rotation(0, math.radians(rng.uniform(-a.tilt_deg, a.tilt_deg)))
        m = m @ rotation(1, math.radians(rng.uniform(-a.tilt_deg, a.tilt_deg)))
        m = m @ np.diag(1.0 / zoom)
        if rng.random() < a.p_zflip:
            m = m @ np.diag([1.0, 1.0, -1.0])
        return m, {"zoom": zoom.round(3).tolist(), "rot_deg": round(ang, 1)}

    def centre(self, src, rng):
        present = [c for c in src.present_classes() if src.labelled[c]]
        if present and rng.random() < self.aug.p_fg:
            c = present[rng.integers(len(present))]
            pts = src.points[c]
            kji = pts[rng.integers(len(pts))].astype(float)
            kji += rng.uniform(-self.patch / 4, self.patch / 4, 3)
        else:
            kji = src.body_points[rng.integers(len(src.body_points))].astype(float)
        return kji[::-1].copy()  # (i, j, k)

    def sample(self, rng):
        src = self.pick_source(rng)
        m, info = self.random_affine(rng)
        c = self.centre(src, rng)
        coords = self.u @ torch.from_numpy(m.T.astype(np.float32)) + torch.from_numpy(c.astype(np.float32))
        shape_ijk = np.array(src.shape[::-1])
        lo = np.floor(coords.min(0).values.numpy()).astype(int) - 1
        hi = np.ceil(coords.max(0).values.numpy()).astype(int) + 2
        lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, shape_ijk)
        empty = np.any(hi_c <= lo_c)
        if empty:  # the patch misses the volume entirely: all padding
            hu = torch.full((self.patch,) * 3, PAD_HU)
            lab = torch.zeros((self.patch,) * 3, dtype=torch.long)
        else:
            sl = (slice(lo_c[2], hi_c[2]), slice(lo_c[1], hi_c[1]), slice(lo_c[0], hi_c[0]))
            if src.kind == "render":
                phase = PHASES[rng.choice(4, p=PHASE_P)]
                info["phase"] = phase
                table = (sample_group_hu(rng, phase) - AIR_HU) / np.float32(255.0)  # (HU + 1000) / 255
                a = src.arrays
                crop = table[a["g1"][sl]] * a["f1"][sl] + table[a["g2"][sl]] * a["f2"][sl]
                crop += np.float32(AIR_HU - PAD_HU)  # HU + 1024
                crop = torch.from_numpy(crop)
            else:
                crop = torch.from_numpy(np.asarray(src.arrays["hu"][sl]).astype(np.float32)) - PAD_HU
            labc = torch.from_numpy(np.asarray(src.labels[sl]).astype(np.float32))
            size = torch.tensor([hi_c[0] - lo_c[0], hi_c[1] - lo_c[1], hi_c[2] - lo_c[2]], dtype=torch.float32)
            g = (coords - torch.from_numpy(lo_c.astype(np.float32))) / (size - 1).clamp(min=1) * 2 - 1
            g = g.view(1, self.patch, self.patch, self.patch, 3)
            hu = F.grid_sample(crop[None, None], g, mode="bilinear", padding_mode="zeros",
                               align_corners=True)[0, 0] + PAD_HU
            lab = F.grid_sample(labc[None, None], g, mode="nearest", padding_mode="zeros",
                                align_corners=True)[0, 0].round().long()
        hu, lab = self.intensity(hu, lab, src, rng, info)
        labelled = torch.from_numpy(src.labelled.copy())
        lab[~labelled[lab]] = 0  # never happens by construction; guards the partial-label loss
        return window(hu), lab, labelled, src.name, info

    def intensity(self, hu, lab, src, rng, info):
        a = self.aug
        P = self.patch
        mild = src.kind == "ct"
        if mild and rng.random() >= a.real_intensity_p:
            return self.fov(hu, lab, rng, info)
        scale = 0.5 if mild else 1.0
        outside = hu <= PAD_HU + 0.5
        s = rng.uniform(*a.blur_sigma) * scale
        if s > 0.2:
            hu = blur3d(hu, [s * rng.uniform(0.7, 1.3) for _ in range(3)])
        n = rng.uniform(*a.noise_sd) * scale
        if n > 0:
            hu = hu + torch.randn(hu.shape, generator=None) * n
        cn = rng.uniform(*a.corr_noise_sd) * scale
        if cn > 1:
            z = blur3d(torch.randn(hu.shape), [rng.uniform(0.7, 1.5)] * 3)
            hu = hu + z / z.std().clamp(min=1e-6) * cn
        b = rng.uniform(*a.bias_sd) * scale
        if b > 1:
            coarse = torch.randn(1, 1, 3, 3, 3) * b
            hu = hu + F.interpolate(coarse, size=(P, P, P), mode="trilinear", align_corners=True)[0, 0]
        hu = torch.where(outside, torch.full_like(hu, PAD_HU), hu)
        info["noise"] = round(n, 1)
        return self.fov(hu, lab, rng, info)

    def fov(self, hu, lab, rng, info):
        a = self.aug
        P = self.patch
        cut = torch.zeros(hu.shape, dtype=torch.bool)
        if rng.random() < a.p_fov_circle:
            ci, cj = rng.uniform(-P / 2, P / 2, 2) + (P - 1) / 2
            r = rng.uniform(P * 0.4, P * 1.1)
            ii = torch.arange(P, dtype=torch.float32)
            d2 = (ii[None, None, :] - ci) ** 2 + (ii[None, :, None] - cj) ** 2  # [1, j, i]
            cut |= d2.expand(P, P, P) > r * r
            info["fov_circle_r"] = round(r, 1)
        if rng.random() < a.p_fov_z:
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


def load_sources(args, log=print):
    """Sources for a training run from parsed train.py args. Returns (sources, notes)."""
    sources, notes = [], []
    data = Path(args.data) if args.data else None
    cache = Path(args.cache)
    have_data = data is not None and data.is_dir()
    if args.smoke or not have_data:
        if not args.smoke:
            raise SystemExit(f"error: shared data folder {args.data} not found (needed for training; --smoke runs "
                             f"without it)")
        sources.append(synthetic_source())
        notes.append("synthetic phantom (smoke)")
    else:
        labels19 = Path(args.labels19)
        for sex in ("AM", "AF"):
            if (data / "icrp110" / f"ICRP110_{sex}_organs.nii.gz").exists():
                if not (labels19 / f"icrp110_{sex}_labels19.nii.gz").exists():
                    import subprocess
                    log(f"{labels19}: no 19-class ICRP maps yet, running scripts/prepare_label_maps.py")
                    subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "prepare_label_maps.py"),
                                    "--data", str(data), "--out", str(labels19)], check=True,
                                   stdout=subprocess.DEVNULL)
                sources.append(icrp_source(data, sex, labels19, cache))
    if have_data and (data / "totalseg_example" / "example_ct.nii.gz").exists() and not args.no_example:
        sources.append(totalseg_example_source(data, cache, weight=1.0))
    if args.data_totalseg:
        ts = totalseg_dataset_sources(args.data_totalseg, cache, workers=args.workers, limit=args.totalseg_limit,
                                      log=log)
        sources.extend(ts)
    return sources, notes
