#!/usr/bin/python3
"""Converts the label maps in ../shared/data into ctarr's 19-class label maps.

Outputs (uint8 NIfTI, same grid and affine as the source) go to --out, by default build-data/labels19 in the
repo (git-ignored; an output folder in the committed tree is refused):

  icrp110_AM_labels19.nii.gz, icrp110_AF_labels19.nii.gz   ICRP Publication 110 adult male / female phantoms
  totalseg_example_labels19.nii.gz                           TotalSegmentator's example segmentation (v2 ids)
  totalseg_sXXXX_labels19.nii.gz                             each TotalSegmentator dataset subject in
                                                             totalseg_subjects/ (one binary mask per structure)
  labels19_provenance.json                                   sources + sha256, ICRP organ ids / TotalSegmentator
                                                             ids per class, midline split, orientation check,
                                                             per-class centroids (LPS mm) and voxel counts

The thorax_cta heart mask is a single-structure mask and is left as it is.

The ICRP phantoms do not split ribs/scapulae/clavicles or the pelvis into left and right: they are split at
the body midline, the sagittal plane through the spine (cervical to sacrum). The spine of the male phantom
leans by ~17 mm from neck to sacrum, so the plane's x follows the spine slice by slice (the spine's centroid
x per slice, median-smoothed, extended beyond the spine's z range with its end values). Connected bone pieces
lying (>= 90 %) on one side go to that side whole; only pieces straddling the midline are cut voxel by voxel.

Every output is checked against anatomy (liver on the patient's right, lungs above the liver, skull on top,
...); the script prints per-class centroids in LPS mm and exits non-zero, naming the failed checks, if any
check fails.

Usage: /usr/bin/python3 scripts/prepare_label_maps.py [--data ../shared/data] [--out build-data/labels19]
"""

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ctarr_labels as cl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPINE = [cl.LABEL[n] for n in ("vertebrae_cervical", "vertebrae_thoracic", "vertebrae_lumbar", "sacrum")]
ONE_SIDE_FRACTION = 0.9  # a connected piece this much on one side of the midline goes to that side whole


class AnatomyError(RuntimeError):
    pass


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rel(path, base):
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


def check_output_dir(out):
    """Refuses an output folder inside the repo unless git ignores it (outputs must never be committed)."""
    out = Path(out).resolve()
    try:
        out.relative_to(REPO)
    except ValueError:
        return
    probe = out / "probe.nii.gz"
    r = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(probe)], capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"error: --out {out} is inside the repo and not git-ignored; outputs are data and must "
                         f"not be committed. Use build-data/... (ignored) or a folder outside the repo.")


def voxel_to_ras(affine, ijk):
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def ras_to_lps(xyz):
    return xyz * np.array([-1.0, -1.0, 1.0])


def label_stats(labels, affine):
    """{label: (centroid LPS mm, voxel count)} for labels 1..19 present."""
    counts = np.bincount(labels.ravel(), minlength=cl.NUM_CLASSES + 1)
    present = [c for c in range(1, cl.NUM_CLASSES + 1) if counts[c] > 0]
    idx = np.nonzero(labels)
    vals = labels[idx]
    ijk = np.stack(idx, axis=1).astype(np.float64)
    sums = np.zeros((cl.NUM_CLASSES + 1, 3))
    for a in range(3):
        sums[:, a] = np.bincount(vals, weights=ijk[:, a], minlength=cl.NUM_CLASSES + 1)
    stats = {}
    for c in present:
        centre_ijk = sums[c] / counts[c]
        stats[c] = (ras_to_lps(voxel_to_ras(affine, centre_ijk[None, :])[0]), int(counts[c]))
    return stats


def merged_centroid(stats, labels):
    have = [c for c in labels if c in stats]
    if not have:
        return None
    w = np.array([stats[c][1] for c in have], dtype=float)
    return (np.stack([stats[c][0] for c in have]) * w[:, None]).sum(0) / w.sum()


def check_anatomy(stats, name):
    """Returns the list of passed check descriptions; raises AnatomyError listing the failed ones.

    LPS: +x = patient left, +y = posterior, +z = superior. Checks run only where their classes are present.
    """
    L = cl.LABEL
    x = lambda c: stats[c][0][0]  # noqa: E731
    y = lambda c: stats[c][0][1]  # noqa: E731
    z = lambda c: stats[c][0][2]  # noqa: E731
    spine = merged_centroid(stats, SPINE)
    passed, failed = [], []

    def check(ok, what):
        (passed if ok else failed).append(what)

    has = lambda *cs: all(c in stats for c in cs)  # noqa: E731
    if spine is not None:
        sx, sy = spine[0], spine[1]
        if has(L["liver"]):
            check(x(L["liver"]) < sx, f"liver on the patient's right: LPS x {x(L['liver']):.1f} < spine {sx:.1f}")
        if has(L["spleen"]):
            check(x(L["spleen"]) > sx, f"spleen on the patient's left: LPS x {x(L['spleen']):.1f} > spine {sx:.1f}")
        if has(L["heart"]):
            check(x(L["heart"]) > sx, f"heart left of the spine: LPS x {x(L['heart']):.1f} > {sx:.1f}")
            check(y(L["heart"]) < sy, f"heart anterior to the spine: LPS y {y(L['heart']):.1f} < {sy:.1f}")
        if has(L["sternum"]):
            check(y(L["sternum"]) < sy, f"sternum anterior to the spine: LPS y {y(L['sternum']):.1f} < {sy:.1f}")
        for left, right in (("lung_left", "lung_right"), ("kidney_left", "kidney_right"),
                            ("ribs_left", "ribs_right"), ("hip_left", "hip_right")):
            for side, sign in ((left, 1.0), (right, -1.0)):
                if has(L[side]):
                    check(sign * (x(L[side]) - sx) > 0,
                          f"{side} on the patient's {'left' if sign > 0 else 'right'}: LPS x {x(L[side]):.1f} "
                          f"vs spine {sx:.1f}")
    lungs = merged_centroid(stats, [L["lung_left"], L["lung_right"]])
    if lungs is not None and has(L["liver"]):
        check(lungs[2] > z(L["liver"]), f"lungs above the liver: LPS z {lungs[2]:.1f} > {z(L['liver']):.1f}")
    if has(L["skull"]):
        # the cervical spine is left out: where only the mandible is in view (s0004), the skull's centroid lies at
        # the level of C2-C3, and the spine's cut-off part may reach as high
        others = [c for c in stats if c not in (L["skull"], L["brain"], L["vertebrae_cervical"])]
        top = max((z(c) for c in others), default=-np.inf)
        check(z(L["skull"]) > top, f"skull on top: LPS z {z(L['skull']):.1f} > every trunk class ({top:.1f})")
    if has(L["brain"]) and lungs is not None:
        check(z(L["brain"]) > lungs[2], f"brain above the lungs: LPS z {z(L['brain']):.1f} > {lungs[2]:.1f}")
    order = [c for c in SPINE if c in stats]
    for upper, lower in zip(order, order[1:]):
        check(z(upper) > z(lower), f"{cl.CLASS_NAMES[upper - 1]} above {cl.CLASS_NAMES[lower - 1]}: "
                                   f"LPS z {z(upper):.1f} > {z(lower):.1f}")
    for kidney in (L["kidney_left"], L["kidney_right"]):
        if has(L["urinary_bladder"], kidney):
            check(z(L["urinary_bladder"]) < z(kidney),
                  f"urinary_bladder below {cl.CLASS_NAMES[kidney - 1]}: LPS z {z(L['urinary_bladder']):.1f} "
                  f"< {z(kidney):.1f}")
    if failed:
        raise AnatomyError(f"{name}: anatomy check failed:\n  " + "\n  ".join(failed) +
                           "\n(left/right or up/down is wrong: check the source affine and the mapping)")
    return passed


def print_centroids(name, stats):
    print(f"\n{name}: class centroids (LPS mm: +x patient left, +y posterior, +z superior)")
    print(f"  {'label':>5} {'class':<20} {'x':>8} {'y':>8} {'z':>8} {'voxels':>9}")
    for c in range(1, cl.NUM_CLASSES + 1):
        if c in stats:
            (px, py, pz), n = stats[c]
            print(f"  {c:>5} {cl.CLASS_NAMES[c - 1]:<20} {px:8.1f} {py:8.1f} {pz:8.1f} {n:>9}")
        else:
            print(f"  {c:>5} {cl.CLASS_NAMES[c - 1]:<20} {'absent':>8}")


def write_labels(labels, source_img, path):
    img = nib.Nifti1Image(labels.astype(np.uint8), source_img.affine, header=source_img.header.copy())
    img.set_data_dtype(np.uint8)
    img.header.set_slope_inter(1.0, 0.0)
    img.set_sform(source_img.affine, code=int(source_img.header["sform_code"]) or 1)
    img.set_qform(source_img.affine, code=int(source_img.header["qform_code"]) or 1)
    nib.save(img, str(path))
    back = nib.load(str(path))
    if back.shape != source_img.shape or not np.allclose(back.affine, source_img.affine, atol=1e-4):
        raise RuntimeError(f"{path}: written grid differs from the source grid")


def orientation_check(name, affine, liver_mask, spine_mask):
    """Empirical RAS/LPS check: the liver is on the patient's right. Returns a dict for the provenance."""
    liver = voxel_to_ras(affine, np.argwhere(liver_mask).mean(0)[None, :])[0]
    spine = voxel_to_ras(affine, np.argwhere(spine_mask).mean(0)[None, :])[0]
    dx = liver[0] - spine[0]
    codes = "".join(nib.aff2axcodes(affine))
    ok = dx > 0
    print(f"{name}: orientation check: liver world x {liver[0]:+.1f} mm, spine world x {spine[0]:+.1f} mm "
          f"(affine as stored, NIfTI RAS world) -> liver is at {'+' if ok else '-'}x of the spine; the liver is on "
          f"the patient's right, so RAS +x = patient right and LPS x = -RAS x "
          f"({'consistent with' if ok else 'CONTRADICTS'} the RAS sform; voxel axes point {codes})")
    if not ok:
        raise AnatomyError(f"{name}: the liver lies at -x (RAS) of the spine: the file's left/right is flipped")
    return {"liver_ras_x_mm": round(float(liver[0]), 1), "spine_ras_x_mm": round(float(spine[0]), 1),
            "liver_minus_spine_ras_x_mm": round(float(dx), 1), "voxel_axis_codes": codes,
            "conclusion": "liver at +x of the spine in the stored (RAS) world: RAS +x = patient right, "
                          "LPS x = -RAS x; patient left = larger LPS x"}


def midline_per_slice(spine_mask, affine):
    """LPS x of the body midline for every slice k (third voxel axis): spine centroid x, smoothed, extended."""
    nk = spine_mask.shape[2]
    idx = np.argwhere(spine_mask)
    x_lps = -voxel_to_ras(affine, idx.astype(float))[:, 0]
    counts = np.bincount(idx[:, 2], minlength=nk)
    sums = np.bincount(idx[:, 2], weights=x_lps, minlength=nk)
    have = counts > 0
    ks = np.arange(nk)
    mid = np.full(nk, np.nan)
    mid[have] = sums[have] / counts[have]
    mid[have] = ndimage.median_filter(mid[have], size=5, mode="nearest")
    mid = np.interp(ks, ks[have], mid[have])  # constant beyond the spine's ends
    return mid, float(x_lps.mean())


def split_bilateral(group_mask, affine, midline, left_label, right_label):
    """Labels of the group's voxels (left/right of the midline) and the number of pieces cut voxel-wise."""
    out = np.zeros(group_mask.shape, np.uint8)
    comps, n = ndimage.label(group_mask, structure=np.ones((3, 3, 3), bool))
    idx = np.argwhere(group_mask)
    x_lps = -voxel_to_ras(affine, idx.astype(float))[:, 0]
    is_left = x_lps > midline[idx[:, 2]]
    comp = comps[tuple(idx.T)]
    left_frac = np.bincount(comp, weights=is_left, minlength=n + 1) / np.maximum(np.bincount(comp, minlength=n + 1), 1)
    whole_left = left_frac >= ONE_SIDE_FRACTION
    whole_right = left_frac <= 1.0 - ONE_SIDE_FRACTION
    side_left = np.where(whole_left[comp], True, np.where(whole_right[comp], False, is_left))
    out[tuple(idx.T)] = np.where(side_left, left_label, right_label)
    cut = int(np.count_nonzero(~(whole_left | whole_right)[1:]))
    return out, n, cut


def prepare_icrp110(data, out, sex):
    src = data / "icrp110" / f"ICRP110_{sex}_organs.nii.gz"
    organ_table = data / "icrp110" / f"{sex}_organs.dat"
    organs = cl.read_icrp110_organs(organ_table)
    img = nib.load(str(src))
    ids = np.asarray(img.dataobj)
    if ids.ndim != 3:
        raise SystemExit(f"error: {src}: expected a 3D label map, got shape {ids.shape}")
    ids = ids.astype(np.int32)
    affine = img.affine
    k_axis = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    if abs(k_axis[2]) < 0.9:
        raise SystemExit(f"error: {src}: the third voxel axis is not head-feet; the per-slice midline needs it")
    name = f"icrp110_{sex}"
    by_class = cl.icrp110_organs_by_class(organs)
    present_ids = set(np.unique(ids).tolist())

    single = np.zeros(256, np.uint8)
    pairs = {}
    for target, organ_ids in by_class.items():
        if isinstance(target, tuple):
            pairs[target] = organ_ids
        else:
            single[organ_ids] = target
    labels = single[ids]

    liver_ids = by_class[cl.LABEL["liver"]]
    spine_ids = [o for c in SPINE for o in by_class[c]]
    spine_mask = np.isin(ids, spine_ids)
    orientation = orientation_check(name, affine, np.isin(ids, liver_ids), spine_mask)
    midline, spine_x = midline_per_slice(spine_mask, affine)
    split_info = {}
    for (left, right), organ_ids in sorted(pairs.items()):
        group = np.isin(ids, organ_ids)
        sided, n_pieces, n_cut = split_bilateral(group, affine, midline, left, right)
        labels[group] = sided[group]
        split_info[f"{cl.CLASS_NAMES[left - 1]}/{cl.CLASS_NAMES[right - 1]}"] = {
            "connected_pieces": n_pieces, "pieces_cut_at_midline": n_cut}
        print(f"{name}: split {cl.CLASS_NAMES[left - 1]}/{cl.CLASS_NAMES[right - 1]}: {n_pieces} connected "
              f"pieces, {n_cut} straddling the midline cut voxel-wise")
    spine_ks = np.unique(np.argwhere(spine_mask)[:, 2])
    print(f"{name}: midline (spine centroid) LPS x: overall {spine_x:.1f} mm, per slice "
          f"{midline[spine_ks].min():.1f} .. {midline[spine_ks].max():.1f} mm")

    out_path = out / f"{name}_labels19.nii.gz"
    write_labels(labels, img, out_path)
    stats = label_stats(labels, affine)
    print_centroids(name, stats)
    passed = check_anatomy(stats, name)
    missing = [cl.CLASS_NAMES[c - 1] for c in range(1, cl.NUM_CLASSES + 1) if c not in stats]
    if missing:
        raise AnatomyError(f"{name}: classes missing from the phantom: {missing}")
    print(f"{name}: {len(passed)} anatomy checks passed -> {out_path}")

    classes = {}
    for target, organ_ids in by_class.items():
        entry = {"organ_ids": organ_ids, "organs": [organs[o][0] for o in organ_ids],
                 "organ_ids_absent_in_volume": [o for o in organ_ids if o not in present_ids]}
        if isinstance(target, tuple):
            for label, side in zip(target, ("left", "right")):
                classes[cl.CLASS_NAMES[label - 1]] = dict(
                    label=label, **entry, split=f"voxels/pieces on the patient's {side} of the midline")
        else:
            classes[cl.CLASS_NAMES[target - 1]] = dict(label=target, **entry)
    classes = dict(sorted(classes.items(), key=lambda kv: kv[1]["label"]))
    return out_path.name, {
        "source": rel(src, data.parent), "source_sha256": sha256(src),
        "organ_table": rel(organ_table, data.parent), "source_label_set": f"ICRP Publication 110 {sex} organ ids",
        "classes": classes,
        "midline": {"definition": "sagittal plane through the spine (cervical, thoracic, lumbar, sacrum organ "
                                  "ids): spine centroid LPS x per slice, median over 5 slices, held constant "
                                  "beyond the spine; pieces >= 90 % on one side assigned whole",
                    "spine_centroid_lps_x_mm": round(spine_x, 1),
                    "per_slice_lps_x_mm_range": [round(float(midline[spine_ks].min()), 1),
                                                 round(float(midline[spine_ks].max()), 1)],
                    "splits": split_info},
        "orientation_check": orientation,
        "anatomy_checks_passed": passed,
        "centroids_lps_mm": {cl.CLASS_NAMES[c - 1]: [round(float(v), 1) for v in stats[c][0]] for c in stats},
        "voxels": {cl.CLASS_NAMES[c - 1]: stats[c][1] for c in stats},
    }


def prepare_totalseg_example(data, out):
    folder = data / "totalseg_example"
    src = folder / "example_seg_fast_force_split.nii.gz"
    label_json = folder / "totalseg_v2_total_labels.json"
    names = cl.totalseg_names(2)
    if label_json.exists():
        with open(label_json) as f:
            from_file = {int(k): v for k, v in json.load(f).items()}
        mismatch = {k: v for k, v in from_file.items() if k >= len(names) or names[k] != v}
        if mismatch or len(from_file) != len(names) - 1:
            raise SystemExit(f"error: {label_json} disagrees with ctarr_labels.TOTALSEG_V2_NAMES at ids "
                             f"{sorted(mismatch)}")
    lut = np.array(cl.totalseg_lookup(names), np.uint8)
    img = nib.load(str(src))
    seg = np.asarray(img.dataobj).astype(np.int64)
    if seg.max() >= len(lut):
        raise SystemExit(f"error: {src}: label {seg.max()} is beyond TotalSegmentator v2's {len(lut) - 1}")
    labels = lut[seg]
    name = "totalseg_example"
    spine_mask = np.isin(labels, SPINE)
    orientation = orientation_check(name, img.affine, labels == cl.LABEL["liver"], spine_mask)
    out_path = out / f"{name}_labels19.nii.gz"
    write_labels(labels, img, out_path)
    stats = label_stats(labels, img.affine)
    print_centroids(name, stats)
    passed = check_anatomy(stats, name)
    print(f"{name}: {len(passed)} anatomy checks passed -> {out_path}")
    present = set(np.unique(seg).tolist())
    classes = {}
    for c in range(1, cl.NUM_CLASSES + 1):
        tids = [i for i in range(1, len(names)) if lut[i] == c]
        classes[cl.CLASS_NAMES[c - 1]] = {"label": c, "totalseg_v2_ids": tids, "names": [names[i] for i in tids],
                                          "ids_present_in_source": [i for i in tids if i in present]}
    return out_path.name, {
        "source": rel(src, data.parent), "source_sha256": sha256(src),
        "source_label_set": "TotalSegmentator v2 total (117 classes), ids per totalseg_v2_total_labels.json",
        "classes": classes,
        "orientation_check": orientation,
        "anatomy_checks_passed": passed,
        "centroids_lps_mm": {cl.CLASS_NAMES[c - 1]: [round(float(v), 1) for v in stats[c][0]] for c in stats},
        "voxels": {cl.CLASS_NAMES[c - 1]: stats[c][1] for c in stats},
        "absent_classes": [cl.CLASS_NAMES[c - 1] for c in range(1, cl.NUM_CLASSES + 1) if c not in stats],
    }


def prepare_totalseg_subject(data, out, subject_dir):
    """19-class map of a TotalSegmentator dataset subject (segmentations/<structure>.nii.gz, all on one grid)."""
    masks = sorted((subject_dir / "segmentations").glob("*.nii.gz"))
    if not masks:
        raise SystemExit(f"error: {subject_dir}/segmentations: no masks")
    grid = nib.load(str(masks[0]))
    labels = np.zeros(grid.shape[:3], np.uint8)
    used = {}
    for m in masks:
        structure = m.name[:-len(".nii.gz")]
        c = cl.label_for_totalseg_name(structure)
        if c is None:
            continue
        img = nib.load(str(m))
        if img.shape[:3] != grid.shape[:3] or not np.allclose(img.affine, grid.affine, atol=1e-3):
            raise SystemExit(f"error: {m}: not on the grid of {masks[0]}")
        voxels = np.asarray(img.dataobj) > 0
        if voxels.any():
            labels[voxels] = c
            used.setdefault(cl.CLASS_NAMES[c - 1], []).append(structure)
    name = f"totalseg_{subject_dir.name}"
    stats = label_stats(labels, grid.affine)
    if has_liver_and_spine(stats):
        orientation = orientation_check(name, grid.affine, labels == cl.LABEL["liver"], np.isin(labels, SPINE))
    else:
        orientation = "not checked: no liver or no spine in view"
    out_path = out / f"{name}_labels19.nii.gz"
    write_labels(labels, grid, out_path)
    print_centroids(name, stats)
    passed = check_anatomy(stats, name)
    print(f"{name}: {len(passed)} anatomy checks passed -> {out_path}")
    return out_path.name, {
        "source": rel(subject_dir / "segmentations", data.parent),
        "source_sha256": {m.name: sha256(m) for m in masks if cl.label_for_totalseg_name(m.name[:-7])},
        "source_label_set": "TotalSegmentator v2 dataset masks, one file per structure (CC BY 4.0, Wasserthal et al. "
                            "2023, Zenodo 10.5281/zenodo.6802613)",
        "structures_per_class": used,
        "orientation_check": orientation,
        "anatomy_checks_passed": passed,
        "centroids_lps_mm": {cl.CLASS_NAMES[c - 1]: [round(float(v), 1) for v in stats[c][0]] for c in stats},
        "voxels": {cl.CLASS_NAMES[c - 1]: stats[c][1] for c in stats},
        "absent_classes": [cl.CLASS_NAMES[c - 1] for c in range(1, cl.NUM_CLASSES + 1) if c not in stats],
    }


def has_liver_and_spine(stats):
    return cl.LABEL["liver"] in stats and any(c in stats for c in SPINE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                    help="shared data folder (default: ../shared/data beside the repo)")
    ap.add_argument("--out", type=Path, default=REPO / "build-data" / "labels19",
                    help="output folder (default: build-data/labels19, git-ignored)")
    args = ap.parse_args()
    data = args.data.resolve()
    if not (data / "icrp110").is_dir() and not (data / "totalseg_example").is_dir():
        raise SystemExit(f"error: {data}: no icrp110/ or totalseg_example/ here; pass --data ../shared/data")
    check_output_dir(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()

    provenance = {
        "generated_by": "scripts/prepare_label_maps.py",
        "frame_note": "centroids in LPS mm (+x patient left, +y posterior, +z superior), as ITK reports them",
        "classes": {str(i + 1): n for i, n in enumerate(cl.CLASS_NAMES)},
        "outputs": {},
        "skipped": {"totalseg_example/thorax_cta/heart.nii.gz": "single heart mask, used as it is"},
    }
    try:
        for sex in ("AM", "AF"):
            if (data / "icrp110" / f"ICRP110_{sex}_organs.nii.gz").exists():
                key, entry = prepare_icrp110(data, out, sex)
                provenance["outputs"][key] = entry
            else:
                print(f"skipped: {data}/icrp110/ICRP110_{sex}_organs.nii.gz not found")
        if (data / "totalseg_example" / "example_seg_fast_force_split.nii.gz").exists():
            key, entry = prepare_totalseg_example(data, out)
            provenance["outputs"][key] = entry
        else:
            print(f"skipped: {data}/totalseg_example/example_seg_fast_force_split.nii.gz not found")
        for subject in sorted((data / "totalseg_subjects").glob("s[0-9]*")):
            key, entry = prepare_totalseg_subject(data, out, subject)
            provenance["outputs"][key] = entry
    except AnatomyError as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    with open(out / "labels19_provenance.json", "w") as f:
        json.dump(provenance, f, indent=1)
    print(f"\nwrote {len(provenance['outputs'])} label maps and labels19_provenance.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
