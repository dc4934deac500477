"""Training and validation volumes, each held once on the 3 mm canonical grid ([k, j, i] along LPS).

Kinds:
  ct      a real CT in HU (int16) with its 19-class labels and the set of classes labelled in it
  render  a label map to render CTs from: per 3 mm voxel the two tissue groups covering most of it and their
          fractions (box integration from the native grid keeps partial volume), plus the 19-class labels. HU are
          drawn per sample (tissues.sample_group_hu), so every patch is a different "scan".

Preparation (native -> 3 mm) happens once and is cached as .npy under the cache folder (memory-mapped after).
"""

import glob
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from . import classes as cl
from . import tissues
from .geometry import BoxResampler, box_labels, canonical, top2_fractions

CACHE_VERSION = "v3"
TOTALSEG_LICENCE = "CC BY 4.0 (TotalSegmentator dataset, Wasserthal et al. 2023, doi:10.5281/zenodo.6802613)"
ICRP_LICENCE = "ICRP Publication 110, research use (distributed with Geant4's ICRP110 example)"


class Source:
    """One 3 mm volume. kind 'render': arrays g1, g2, f1, f2; kind 'ct': array hu (int16)."""

    def __init__(self, name, kind, arrays, labels, labelled, provenance, group="real"):
        self.name, self.kind, self.arrays, self.labels = name, kind, arrays, labels
        self.labelled = np.asarray(labelled, bool).copy()
        self.labelled[0] = True
        self.provenance = provenance
        self.group = group  # sampling group: "real", "icrp", "labelmap", "synthetic"
        rng = np.random.default_rng(0)
        lab = np.asarray(labels)
        self.points = {}
        for c in range(1, cl.NUM_OUT):
            idx = np.flatnonzero(lab.ravel() == c)
            if idx.size:
                idx = rng.choice(idx, min(idx.size, 3000), replace=False)
                self.points[c] = np.stack(np.unravel_index(idx, lab.shape), 1).astype(np.int32)
        body = np.asarray(arrays["f1"]) > 127 if kind == "render" else np.asarray(arrays["hu"]) > -500
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

    def labelled_names(self):
        return [cl.CLASSES[c - 1] for c in range(1, cl.NUM_OUT) if self.labelled[c]]

    def describe(self):
        return dict(name=self.name, kind=self.kind, group=self.group, **self.provenance,
                    labelled_classes=self.labelled_names())


# ---- cache --------------------------------------------------------------------------------------------------------

def _file_key(*paths, extra=""):
    h = hashlib.sha256((CACHE_VERSION + extra).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{Path(p).resolve()}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _load_cache(folder, keys, key):
    meta_path = Path(folder) / "meta.json"
    if not meta_path.exists():
        return None
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("key") != key or not all((Path(folder) / f"{k}.npy").exists() for k in keys):
        return None
    return {k: np.load(Path(folder) / f"{k}.npy", mmap_mode="r") for k in keys}, meta


def _save_cache(folder, arrays, meta):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, v in arrays.items():
        np.save(folder / f"{k}.npy", v)
    with open(folder / "meta.json", "w") as f:
        json.dump(meta, f, indent=1)


# ---- real CT --------------------------------------------------------------------------------------------------------

def _prepare_ct(ct_img, labels_native, folder, key, meta):
    """Real CT + native-grid [k,j,i] labels -> cached 3 mm (hu int16, labels uint8)."""
    cached = _load_cache(folder, ("hu", "labels"), key)
    if cached is not None:
        return cached
    hu, spacing, _ = canonical(ct_img)
    hu = np.asarray(hu, np.float32)
    if np.allclose(spacing, cl.SPACING_MM, atol=1e-3):
        hu3, lab3 = hu, np.asarray(labels_native, np.uint8)
    else:
        rs = BoxResampler(hu.shape, spacing)
        hu3, lab3 = rs(hu), box_labels(labels_native, rs)
    hu3 = np.clip(np.rint(hu3), -1024, 3071).astype(np.int16)
    _save_cache(folder, {"hu": hu3, "labels": lab3}, dict(key=key, native_spacing_mm=[float(s) for s in spacing],
                                                          **meta))
    return _load_cache(folder, ("hu", "labels"), key)


def _labelled_from(present_ids):
    labelled = np.zeros(cl.NUM_OUT, bool)
    labelled[list(present_ids)] = True
    return labelled


def totalseg_example_source(data_dir, cache_dir):
    """TotalSegmentator's example CT (3 mm) with its model-made v2 segmentation mapped to 19 classes. Labelled: the
    classes present in it (no skull, C-spine, sternum, brain, heart)."""
    folder = Path(data_dir) / "totalseg_example"
    ct_path, seg_path = folder / "example_ct.nii.gz", folder / "example_seg_fast_force_split.nii.gz"
    names = cl.totalseg_v2_names(folder / "totalseg_v2_total_labels.json")
    lut = np.array([0] + [cl.label_for_totalseg_name(n) or 0 for n in names[1:]], np.uint8)
    seg, _, _ = canonical(nib.load(str(seg_path)))
    lab = lut[np.asarray(seg).astype(np.int64)]
    key = _file_key(ct_path, seg_path)
    arrays, meta = _prepare_ct(nib.load(str(ct_path)), lab, Path(cache_dir) / "totalseg_example", key,
                               {"source": str(ct_path)})
    seg = np.asarray(seg)
    phase = phase_groups(((n, seg == v) for v, n in enumerate(names) if v > 0), meta["native_spacing_mm"],
                         Path(cache_dir) / "totalseg_example" / "phase", key)
    return Source("totalseg_example", "ct", {"hu": arrays["hu"], **{"phase_" + k: phase[k] for k in PHASE_KEYS}},
                  arrays["labels"],
                  _labelled_from(np.unique(np.asarray(arrays["labels"]))),
                  {"data": "TotalSegmentator example CT (totalseg_example/example_ct.nii.gz) with its model-made "
                           "segmentation example_seg_fast_force_split.nii.gz", "licence": TOTALSEG_LICENCE})


def totalseg_masks(subject_dir):
    """{structure name: mask path} of a TotalSegmentator dataset subject."""
    paths = sorted(glob.glob(os.path.join(subject_dir, "segmentations", "*.nii.gz")))
    if not paths:
        raise FileNotFoundError(f"{subject_dir}/segmentations: no masks")
    return {os.path.basename(p)[:-len(".nii.gz")]: p for p in paths}


def _subject_labels19(masks, grid_img):
    """19-class labels [k,j,i] on the subject's native grid + labelled[20] (a class counts as labelled when it has
    a mask file and the mask is not empty; an empty file means "not in the field of view")."""
    labels, present = None, set()
    for name, path in masks.items():
        c = cl.label_for_totalseg_name(name)
        if c is None:
            continue
        img = nib.load(path)
        if img.shape[:3] != grid_img.shape[:3] or not np.allclose(img.affine, grid_img.affine, atol=1e-3):
            raise ValueError(f"{path}: not on the grid of the subject's other masks")
        m, _, _ = canonical(img)
        if labels is None:
            labels = np.zeros(m.shape, np.uint8)
        labels[m > 0] = c
    if labels is None:
        raise ValueError("no TotalSegmentator masks that map to ctarr classes")
    present = set(np.unique(labels).tolist()) - {0}
    # A class with a mask file labels the volume even where the mask is empty (the organ is not in view).
    labelled = np.zeros(cl.NUM_OUT, bool)
    for name in masks:
        c = cl.label_for_totalseg_name(name)
        if c is not None:
            labelled[c] = True
    return labels, labelled, present


def totalseg_ct_source(subject_dir, cache_dir):
    """A TotalSegmentator dataset subject with its CT (s0002, s0003, s0009 in ../shared/data)."""
    subject_dir = Path(subject_dir)
    ct_path = subject_dir / "ct.nii.gz"
    masks = totalseg_masks(subject_dir)
    key = _file_key(ct_path, *masks.values())
    folder = Path(cache_dir) / "totalseg_ct" / subject_dir.name
    cached = _load_cache(folder, ("hu", "labels"), key)
    if cached is None:
        ct_img = nib.load(str(ct_path))
        labels, labelled, _ = _subject_labels19(masks, ct_img)
        _prepare_ct(ct_img, labels, folder, key, {"source": str(ct_path), "labelled": labelled.tolist()})
        cached = _load_cache(folder, ("hu", "labels"), key)
    arrays, meta = cached
    phase = phase_groups(((n, canonical(nib.load(p))[0] > 0) for n, p in masks.items()), meta["native_spacing_mm"],
                         folder / "phase", key)
    return Source(f"totalseg_{subject_dir.name}", "ct",
                  {"hu": arrays["hu"], **{"phase_" + k: phase[k] for k in PHASE_KEYS}}, arrays["labels"],
                  np.array(meta["labelled"], bool),
                  {"data": f"TotalSegmentator dataset subject {subject_dir.name} (totalseg_subjects/"
                           f"{subject_dir.name}/ct.nii.gz + segmentations/)", "licence": TOTALSEG_LICENCE})


def _put_structure_groups(groups, m, name, spacing):
    """Writes one TotalSegmentator structure's tissue groups into the [k,j,i] group map: its shell (within shell mm
    of its surface) and its interior (tissues.totalseg_structure_groups)."""
    shell_g, inner_g, shell_mm = tissues.totalseg_structure_groups(name)
    if shell_mm > 0 and shell_g != inner_g:
        box = tuple(slice(max(0, sl.start - 1), sl.stop + 1) for sl in ndimage.find_objects(m.astype(np.uint8))[0])
        mb = m[box]
        d = ndimage.distance_transform_edt(np.pad(mb, 1), sampling=spacing[::-1])[1:-1, 1:-1, 1:-1]
        gb = groups[box]
        gb[mb & (d <= shell_mm)] = tissues.GROUP[shell_g]
        gb[mb & (d > shell_mm)] = tissues.GROUP[inner_g]
    else:
        groups[m] = tissues.GROUP[inner_g]


PHASE_KEYS = ("g1", "g2", "f1", "f2")


def phase_groups(named_masks, spacing, folder, key):
    """The structures of a native real CT whose HU depends on the contrast phase (vessels, heart, liver, spleen,
    kidneys, pancreas, bowel wall, thyroid ...), from its TotalSegmentator masks, on the 3 mm grid as the two groups
    covering most of each voxel and their fractions (g1, g2, f1, f2 as the renderer's; NO_GROUP elsewhere), cached.
    `named_masks` yields (structure name, canonical [k,j,i] bool mask on the CT's grid); the sampler adds
    tissues.phase_delta_hu over them to show the CT in another phase."""
    key = key + json.dumps(tissues.TISSUE_GROUPS)
    cached = _load_cache(folder, PHASE_KEYS, key)
    if cached is not None:
        return cached[0]
    groups = None
    for name, m in named_masks:
        if groups is None:
            groups = np.full(m.shape, tissues.NO_GROUP, np.uint8)
        if m.any():
            _put_structure_groups(groups, m, name, spacing)
    keep = np.zeros(256, bool)
    keep[[g for g in range(len(tissues.TISSUE_GROUPS)) if tissues.phase_dependent(g)]] = True
    groups[~keep[groups]] = tissues.NO_GROUP
    g1, g2, f1, f2, _ = top2_fractions(groups, spacing, len(tissues.TISSUE_GROUPS), np.zeros(groups.shape, np.uint8))
    _save_cache(folder, {"g1": g1, "g2": g2, "f1": f1, "f2": f2}, {"key": key})
    return _load_cache(folder, PHASE_KEYS, key)[0]


# ---- rendered: TotalSegmentator label maps ------------------------------------------------------------------------

def _fill_hulls(mask2d):
    """Each connected piece of a 2-D mask replaced by its convex hull (the torso and each arm separately)."""
    from scipy.spatial import ConvexHull, QhullError
    out = mask2d.copy()
    pieces, _ = ndimage.label(mask2d)
    for p, sl in enumerate(ndimage.find_objects(pieces), start=1):
        sub = pieces[sl] == p
        pts = np.argwhere(sub)
        if len(pts) < 10:
            continue
        try:
            eq = ConvexHull(pts).equations  # rows (a, b, c): a*y + b*x + c <= 0 inside
        except QhullError:
            continue
        yy, xx = np.mgrid[0:sub.shape[0], 0:sub.shape[1]]
        inside = np.all(eq[:, 0, None, None] * yy + eq[:, 1, None, None] * xx + eq[:, 2, None, None] <= 1e-9, axis=0)
        out[sl] |= inside
    return out


def _body_layers(inside, spacing, rng):
    """Body outline for a label map that has none: per axial slice the union of all structures, closed by ~10 mm,
    each connected piece (torso, arms) replaced by its convex hull (the inner body); around it a muscle layer and a
    subcutaneous fat layer of per-subject random thickness. Returns (inner, muscle, fat, habitus)."""
    close_r = max(1, int(round(10.0 / float(spacing[0]))))
    st = ndimage.generate_binary_structure(2, 1)
    inner = np.zeros_like(inside)
    for k in range(inside.shape[0]):
        sl = inside[k]
        if not sl.any():
            continue
        sl = ndimage.binary_closing(np.pad(sl, close_r), st, iterations=close_r)[close_r:-close_r, close_r:-close_r]
        inner[k] = _fill_hulls(sl)
    dist = np.full(inside.shape, 1e6, np.float32)
    for k in range(inside.shape[0]):
        if inner[k].any():
            dist[k] = ndimage.distance_transform_edt(~inner[k], sampling=spacing[:2][::-1])
    t_muscle = rng.uniform(4.0, 12.0)
    t_fat = rng.uniform(5.0, 35.0)
    muscle = (dist > 0) & (dist <= t_muscle)
    fat = (dist > t_muscle) & (dist <= t_muscle + t_fat)
    return inner, muscle, fat, {"muscle_mm": round(t_muscle, 1), "subcutaneous_fat_mm": round(t_fat, 1)}


def _visceral_fat(shape, spacing, rng, fraction=0.35):
    """Blobby fat/soft-tissue pattern for the unlabelled inside of a label map: a smooth random field thresholded at
    a quantile (fraction of the voxels becomes fat)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    field = ndimage.gaussian_filter(noise, sigma=[8.0 / s for s in spacing[::-1]])
    return field > np.quantile(field, 1.0 - fraction)


def labelmap_render_source(subject_dir, cache_dir, seed=0):
    """A TotalSegmentator label map without its CT, as a render source: every structure gets a tissue group (bones a
    cortex and spongiosa, hollow organs a wall and contents, tissues.totalseg_structure_groups), the unlabelled
    inside of the body a fat / soft-tissue pattern, and a synthetic body wall (muscle, subcutaneous fat)."""
    subject_dir = Path(subject_dir)
    masks = totalseg_masks(subject_dir)
    key = _file_key(*masks.values(), extra=json.dumps(tissues.TISSUE_GROUPS) + f"seed{seed}")
    folder = Path(cache_dir) / "labelmap" / subject_dir.name
    keys = ("g1", "g2", "f1", "f2", "labels")
    cached = _load_cache(folder, keys, key)
    if cached is None:
        rng = np.random.default_rng([seed, int(re.sub(r"\D", "", subject_dir.name) or 0)])
        first = nib.load(next(iter(masks.values())))
        _, spacing, _ = canonical(first)
        groups = None
        labels = None
        inside = None
        for name, path in masks.items():
            m, _, _ = canonical(nib.load(path))
            m = m > 0
            if groups is None:
                groups = np.full(m.shape, tissues.NO_GROUP, np.uint8)
                labels = np.zeros(m.shape, np.uint8)
                inside = np.zeros(m.shape, bool)
            if not m.any():
                continue
            inside |= m
            _put_structure_groups(groups, m, name, spacing)
            c = cl.label_for_totalseg_name(name)
            if c is not None:
                labels[m] = c
        inner, muscle, fat, habitus = _body_layers(inside, spacing, rng)
        free = groups == tissues.NO_GROUP
        vis = _visceral_fat(groups.shape, spacing, rng)
        groups[free & inner & vis] = tissues.GROUP["fat"]
        groups[free & inner & ~vis] = tissues.GROUP["soft_other"]
        groups[free & ~inner & muscle] = tissues.GROUP["muscle"]
        groups[free & ~inner & fat] = tissues.GROUP["fat"]
        g1, g2, f1, f2, lab3 = top2_fractions(groups, spacing, len(tissues.TISSUE_GROUPS), labels)
        labelled = np.zeros(cl.NUM_OUT, bool)
        for name in masks:
            c = cl.label_for_totalseg_name(name)
            if c is not None:
                labelled[c] = True
        _save_cache(folder, {"g1": g1, "g2": g2, "f1": f1, "f2": f2, "labels": lab3},
                    {"key": key, "source": str(subject_dir), "labelled": labelled.tolist(), "habitus": habitus})
        cached = _load_cache(folder, keys, key)
    arrays, meta = cached
    labels = arrays.pop("labels")
    return Source(f"labelmap_{subject_dir.name}", "render", arrays, labels, np.array(meta["labelled"], bool),
                  {"data": f"TotalSegmentator dataset subject {subject_dir.name}, label maps only (totalseg_subjects/"
                           f"{subject_dir.name}/segmentations/), rendered with a synthetic body wall "
                           f"{meta.get('habitus')}", "licence": TOTALSEG_LICENCE}, group="labelmap")


# ---- rendered: ICRP 110 phantoms -----------------------------------------------------------------------------------

def read_icrp110_organs(path):
    """ICRP 110 *_organs.dat -> {organ_id: (name, tissue_number, density_g_cm3)}."""
    organs = {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            m = re.match(r"^\s*(\d+)\s+(.+?)\s+(\d+)\s+(\d+\.\d+)\s*$", line)
            if m:
                organs[int(m.group(1))] = (m.group(2).strip(), int(m.group(3)), float(m.group(4)))
    if not organs:
        raise ValueError(f"{path}: no organ rows found (expected 'ID name tissue density' lines)")
    return organs


def read_icrp110_media(path):
    """ICRP 110 *_media.dat -> {tissue_number: name}."""
    media, started = {}, False
    with open(path, encoding="latin-1") as f:
        for line in f:
            if line.split()[:3] == ["Tissues", "to", "be"]:
                started = True
                continue
            m = re.match(r"^\s*(\d+)\s+(.+?)((?:\s+\d+\.\d+){13})\s*$", line) if started else None
            if m:
                media[int(m.group(1))] = m.group(2).strip()
    if not media:
        raise ValueError(f"{path}: no tissue rows found")
    return media


def icrp_source(data_dir, sex, labels19_dir, cache_dir):
    """ICRP 110 AM/AF phantom as a render source. Its 19-class map comes from scripts/prepare_label_maps.py (run
    here when missing), which splits ribs and pelvis at the body midline."""
    data_dir, labels19_dir = Path(data_dir), Path(labels19_dir)
    organs_nii = data_dir / "icrp110" / f"ICRP110_{sex}_organs.nii.gz"
    organs_dat, media_dat = data_dir / "icrp110" / f"{sex}_organs.dat", data_dir / "icrp110" / f"{sex}_media.dat"
    lab_nii = labels19_dir / f"icrp110_{sex}_labels19.nii.gz"
    if not lab_nii.exists():
        subprocess.run([sys.executable, str(cl.REPO / "scripts" / "prepare_label_maps.py"), "--data", str(data_dir),
                        "--out", str(labels19_dir)], check=True, stdout=subprocess.DEVNULL)
    key = _file_key(organs_nii, lab_nii, organs_dat, extra=json.dumps(tissues.TISSUE_GROUPS))
    folder = Path(cache_dir) / f"icrp110_{sex}"
    keys = ("g1", "g2", "f1", "f2", "labels")
    cached = _load_cache(folder, keys, key)
    if cached is None:
        organs, media = read_icrp110_organs(organs_dat), read_icrp110_media(media_dat)
        lut = np.full(256, tissues.GROUP["soft_other"], np.uint8)  # ids not in the table (141: skin) -> soft tissue
        lut[0] = tissues.NO_GROUP
        for oid, (name, tissue, _) in organs.items():
            lut[oid] = tissues.icrp_tissue_group(name, media[tissue])
        ids, spacing, _ = canonical(nib.load(str(organs_nii)))
        lab, spacing2, _ = canonical(nib.load(str(lab_nii)))
        if lab.shape != ids.shape or not np.allclose(spacing, spacing2, atol=1e-3):
            raise ValueError(f"{lab_nii}: not on the grid of {organs_nii}")
        g1, g2, f1, f2, lab3 = top2_fractions(lut[ids.astype(np.int64)], spacing, len(tissues.TISSUE_GROUPS), lab)
        _save_cache(folder, {"g1": g1, "g2": g2, "f1": f1, "f2": f2, "labels": lab3},
                    {"key": key, "source": str(organs_nii), "native_spacing_mm": [float(s) for s in spacing]})
        cached = _load_cache(folder, keys, key)
    arrays, _ = cached
    labels = arrays.pop("labels")
    return Source(f"icrp110_{sex}", "render", arrays, labels, np.ones(cl.NUM_OUT, bool),
                  {"data": f"ICRP Publication 110 {sex} phantom (icrp110/ICRP110_{sex}_organs.nii.gz), rendered",
                   "licence": ICRP_LICENCE}, group="icrp")


# ---- built-in synthetic phantom (no ../shared/data: smoke runs and tests) -------------------------------------------

def synthetic_phantom(shape=(120, 64, 96)):
    """Ellipsoid "body" at 3 mm with all 19 classes: (tissue group map [k,j,i], labels [k,j,i]). Crude, for smoke
    runs and tests. Axes: i patient left, j posterior, k superior."""
    nk, nj, ni = shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    groups = np.full(shape, tissues.NO_GROUP, np.uint8)
    labels = np.zeros(shape, np.uint8)
    cx, cy = ni / 2, nj / 2
    L, G = cl.LABEL, tissues.GROUP

    def ell(c, r):
        return ((i - c[0]) / r[0]) ** 2 + ((j - c[1]) / r[1]) ** 2 + ((k - c[2]) / r[2]) ** 2 <= 1

    def put(mask, group, label=0):
        groups[mask] = G[group]
        labels[mask] = label

    put((((i - cx) / (ni * 0.45)) ** 2 + ((j - cy) / (nj * 0.42)) ** 2 <= 1) & (k < nk * 0.78), "fat")
    put((((i - cx) / (ni * 0.40)) ** 2 + ((j - cy) / (nj * 0.36)) ** 2 <= 1) & (k < nk * 0.78), "muscle")
    put(ell((cx, cy, nk * 0.88), (ni * 0.2, nj * 0.3, nk * 0.1)), "cortical_bone", L["skull"])
    put(ell((cx, cy, nk * 0.88), (ni * 0.17, nj * 0.26, nk * 0.085)), "brain", L["brain"])
    for name, z0, z1 in (("vertebrae_cervical", 0.70, 0.78), ("vertebrae_thoracic", 0.45, 0.70),
                         ("vertebrae_lumbar", 0.30, 0.45), ("sacrum", 0.22, 0.30)):
        put((((i - cx) / 4) ** 2 + ((j - cy - nj * 0.22) / 4) ** 2 <= 1) & (k >= nk * z0) & (k < nk * z1),
            "spongiosa_axial", L[name])
    put(ell((cx - ni * 0.17, cy, nk * 0.58), (ni * 0.13, nj * 0.28, nk * 0.11)), "lung", L["lung_right"])
    put(ell((cx + ni * 0.17, cy, nk * 0.58), (ni * 0.13, nj * 0.28, nk * 0.11)), "lung", L["lung_left"])
    put(ell((cx + ni * 0.05, cy - nj * 0.1, nk * 0.52), (ni * 0.1, nj * 0.14, nk * 0.06)), "heart_wall", L["heart"])
    put(ell((cx, cy - nj * 0.36, nk * 0.56), (2, 2, nk * 0.08)), "cortical_bone", L["sternum"])
    shell = ((i - cx) / (ni * 0.38)) ** 2 + ((j - cy) / (nj * 0.34)) ** 2
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
    return groups, labels


def synthetic_source(shape=(120, 64, 96)):
    groups, labels = synthetic_phantom(shape)
    g1 = np.where(groups == tissues.NO_GROUP, 0, groups).astype(np.uint8)
    f1 = np.where(groups == tissues.NO_GROUP, 0, 255).astype(np.uint8)
    zeros = np.zeros_like(g1)
    return Source("synthetic_phantom", "render", {"g1": g1, "g2": zeros, "f1": f1, "f2": zeros}, labels,
                  np.ones(cl.NUM_OUT, bool), {"data": "built-in ellipsoid phantom (ctarr_train.sources)",
                                              "licence": "ctarr (Apache-2.0)"}, group="synthetic")


def render_full(source, rng, phase="portal"):
    """A whole rendered source as HU [k,j,i] float32 (for evaluation and pictures; no augmentation)."""
    table = tissues.sample_group_hu(rng, phase) + np.float32(1000.0)
    a = source.arrays
    hu = (table[np.asarray(a["g1"])] * a["f1"] + table[np.asarray(a["g2"])] * a["f2"]) / np.float32(255.0)
    return (hu - np.float32(1000.0)).astype(np.float32)


def thorax_cta_source(data_dir, cache_dir):
    """The thoracic CTA crop (totalseg_example/thorax_cta, 1.5 mm) with its heart mask, which lies on a larger grid:
    the mask is mapped through both affines onto the CT's grid (nearest voxel). Labelled: heart only."""
    folder = Path(data_dir) / "totalseg_example" / "thorax_cta"
    ct_path, mask_path = folder / "ct_1p5mm.nii.gz", folder / "heart.nii.gz"
    key = _file_key(ct_path, mask_path)
    cache = Path(cache_dir) / "thorax_cta"
    cached = _load_cache(cache, ("hu", "labels"), key)
    if cached is None:
        ct_img, mask_img = nib.load(str(ct_path)), nib.load(str(mask_path))
        # CT voxel -> mask voxel, then nearest-neighbour lookup on the CT's grid
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in ct_img.shape[:3]], indexing="ij"), -1).reshape(-1, 3)
        m = np.linalg.inv(mask_img.affine) @ ct_img.affine
        mv = np.rint(ijk @ m[:3, :3].T + m[:3, 3]).astype(int)
        mask = np.asarray(mask_img.dataobj)
        ok = np.all((mv >= 0) & (mv < np.array(mask.shape[:3])), 1)
        heart = np.zeros(len(ijk), np.uint8)
        heart[ok] = mask[mv[ok, 0], mv[ok, 1], mv[ok, 2]] > 0
        heart_img = nib.Nifti1Image(heart.reshape(ct_img.shape[:3]), ct_img.affine)
        lab, _, _ = canonical(heart_img)
        lab = np.where(lab > 0, cl.LABEL["heart"], 0).astype(np.uint8)
        _prepare_ct(ct_img, lab, cache, key, {"source": str(ct_path)})
        cached = _load_cache(cache, ("hu", "labels"), key)
    arrays, _ = cached
    return Source("thorax_cta", "ct", {"hu": arrays["hu"]}, arrays["labels"], _labelled_from([cl.LABEL["heart"]]),
                  {"data": "TotalSegmentator thoracic CTA crop (totalseg_example/thorax_cta/ct_1p5mm.nii.gz) with its "
                           "heart mask", "licence": TOTALSEG_LICENCE})
