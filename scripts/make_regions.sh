#!/usr/bin/env bash
# Infers the shipped regions (regions/<name>.json + regions/manifest.json) from ../shared/data, reproducibly.
#
#   scripts/make_regions.sh [OUT_DIR]          (default OUT_DIR: regions/)
#
# Environment: CTARR (the ctarr binary, default build/bin/ctarr), CTARR_SHARED_DATA (default ../shared/data),
# CTARR_ATLAS (default atlas/, the atlas the boxes refer to), CTARR_DEVICE (default cpu), REGIONS (names to make,
# default all 12). Prepared inputs go to build-data/regions (git-ignored; never commit them).
#
# Cases (each: a 19-class segmentation for the fit + a label map with one value per region, equal file names):
#   ICRP 110 AM and AF phantoms     organ label maps (organ ids from *_organs.dat), fit on their 19-class maps
#   TotalSegmentator example        its v2 segmentation (ids from totalseg_v2_total_labels.json), fit on 19 classes
#   TotalSegmentator subjects, 10   manual masks (segmentations/<structure>.nii.gz), fit on their 19-class maps
#   Learn2Reg AbdomenCTCT, 30 maps  liver, spleen, kidneys, gallbladder, stomach, pancreas, esophagus, aorta, IVC,
#                                   adrenal glands; fit on a 19-class map
#                                   made from the same file (liver 15, spleen 16, kidneys 17/18: 4 classes)
# A case whose label map lacks a region's labels is left out of that region (ctarr infer-region's default).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DATA=${CTARR_SHARED_DATA:-../shared/data}
CTARR=${CTARR:-build/bin/ctarr}
ATLAS=${CTARR_ATLAS:-atlas}
DEVICE=${CTARR_DEVICE:-cpu}
OUT=${1:-regions}
WORK=build-data/regions
THRESHOLD=0.1       # start: a voxel is in the region when >= 10 % of the cases covering it label it ...
MIN_KEPT=0.99       # ... lowered (20 % a step) while some case keeps < 99 % of its label in the boxes + margin ...
MIN_THRESHOLD=0.02  # ... but not below 0.02
MARGIN=10
# Per-region margins (mm) where 10 mm does not keep 99 % of every case: the adrenal glands are a few millimetres
# thick and lie where the 3 mm fits of cases with few classes differ most (ICRP AM kept 96 % at 10 mm).
declare -A MARGIN_OF=([adrenal_glands]=15)
ALL="brain colon gallbladder heart kidneys liver lungs pancreas spine spleen stomach urinary_bladder
     adrenal_glands aorta duodenum esophagus inferior_vena_cava prostate small_bowel thyroid_gland"
ALL=$(echo $ALL)
REGIONS=${REGIONS:-$ALL}

if [[ ! -x "$CTARR" ]]; then
  echo "error: ctarr binary not found at $CTARR (build it: cmake -S . -B build && cmake --build build -j2, or set CTARR)" >&2
  exit 2
fi
for d in icrp110 totalseg_example totalseg_subjects l2r_abdomen_labels; do
  [[ -d "$DATA/$d" ]] || { echo "error: $DATA/$d is needed (set CTARR_SHARED_DATA)" >&2; exit 2; }
done

# 1. 19-class label maps of the ICRP phantoms and the TotalSegmentator example (checked against anatomy)
/usr/bin/python3 scripts/prepare_label_maps.py --data "$DATA" --out build-data/labels19

# 2. per case: seg/<case>.nii.gz (19 classes, for the fit) and labels/<case>.nii.gz (value k = region k)
/usr/bin/python3 - "$DATA" "$WORK" "$ALL" <<'PY'
import hashlib, json, re, sys
from pathlib import Path
import nibabel as nib
import numpy as np

data, work, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split()
value = {n: k + 1 for k, n in enumerate(names)}  # region name -> value in the prepared label maps
for sub in ("seg", "labels"):
    (work / sub).mkdir(parents=True, exist_ok=True)
    for f in (work / sub).glob("*.nii.gz"):
        f.unlink()

def sha256(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()

def save(arr, affine, path):
    img = nib.Nifti1Image(np.asarray(arr, np.uint8), affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    nib.save(img, str(path))

def subdivide_z(arr, affine, target=3.0):
    """Splits slices thicker than the atlas spacing (nearest neighbour, exact), so that every 3 mm voxel of the
    fit's grid holds a label sample; returns the array and its affine."""
    dz = float(np.linalg.norm(affine[:3, 2]))
    f = int(np.ceil(dz / target - 1e-9))
    if f <= 1:
        return arr, affine
    a = affine.copy()
    a[:3, 2] = affine[:3, 2] / f
    a[:3, 3] = affine[:3, 3] + affine[:3, 2] * (-0.5 + 0.5 / f)
    return np.repeat(arr, f, axis=2), a

def remap(arr, table):
    lut = np.zeros(max(int(arr.max()), max(table) if table else 0) + 1, np.uint8)
    for src, dst in table.items():
        if src < len(lut):
            lut[src] = dst
    return lut[arr]

cases = {}

# ICRP 110: organ ids by name from *_organs.dat
ICRP_ORGANS = {
    "brain": r"^brain$",
    "colon": r"^(ascending|transverse|descending|sigmoid) colon (wall|contents)",
    "gallbladder": r"^gall ?bladder (wall|contents)",
    "heart": r"^heart (wall|contents)",
    "kidneys": r"^kidney, (left|right)",
    "liver": r"^liver$",
    "lungs": r"^lung, (left|right)",
    "pancreas": r"^pancreas$",
    "spine": r"^((cervical|thoracic|lumbar) spine|sacrum),",
    "spleen": r"^spleen$",
    "stomach": r"^stomach (wall|contents)",
    "urinary_bladder": r"^urinary bladder (wall|contents)",
    "adrenal_glands": r"^adrenal, (left|right)$",
    "esophagus": r"^oesophagus$",
    "prostate": r"^prostate$",
    "small_bowel": r"^small intestine (wall|contents)$",
    "thyroid_gland": r"^thyroid$",
}
ICRP_ONLY_IN = {"prostate": ("AM",)}  # regions one phantom cannot hold
for sex in ("AM", "AF"):
    organs = {}
    for line in open(data / "icrp110" / f"{sex}_organs.dat", encoding="latin-1"):
        m = re.match(r"^\s*(\d+)\s+(.+?)\s{2,}\d+\s+[\d.]+\s*$", line)
        if m:
            organs[int(m.group(1))] = m.group(2).strip()
    src = data / "icrp110" / f"ICRP110_{sex}_organs.nii.gz"
    img = nib.load(str(src))
    arr = np.asarray(img.dataobj).astype(np.int64)
    table, ids = {}, {}
    for region, pattern in ICRP_ORGANS.items():
        if sex not in ICRP_ONLY_IN.get(region, (sex,)):
            continue
        ids[region] = sorted(i for i, n in organs.items() if re.search(pattern, n.lower()))
        if not ids[region] or not np.isin(arr, ids[region]).any():
            raise SystemExit(f"ICRP {sex}: no voxel of organ ids {ids[region]} for region {region}")
        for i in ids[region]:
            table[i] = value[region]
    labels, aff = subdivide_z(remap(arr, table), img.affine)
    seg19 = nib.load(f"build-data/labels19/icrp110_{sex}_labels19.nii.gz")
    if not np.allclose(seg19.affine, img.affine, atol=1e-3) or seg19.shape != img.shape:
        raise SystemExit(f"ICRP {sex}: the 19-class map is not on the organ map's grid")
    seg, aff2 = subdivide_z(np.asarray(seg19.dataobj), seg19.affine)
    name = f"icrp110_{sex}"
    save(labels, aff, work / "labels" / f"{name}.nii.gz")
    save(seg, aff2, work / "seg" / f"{name}.nii.gz")
    cases[name] = {"source": str(src), "source_sha256": sha256(src), "licence": "ICRP; research use",
                   "label_ids": {r: [f"{i} {organs[i]}" for i in v] for r, v in ids.items()},
                   "segmentation": f"build-data/labels19/icrp110_{sex}_labels19.nii.gz (scripts/prepare_label_maps.py)",
                   "note": "slices split in z to <= 3 mm (nearest neighbour) so that every atlas-spacing voxel holds a sample"}

# TotalSegmentator example: v2 ids by name
ts_names = {int(k): v for k, v in json.load(open(data / "totalseg_example" / "totalseg_v2_total_labels.json")).items()}
def ts_region(n):
    if n in ("brain", "colon", "gallbladder", "heart", "liver", "pancreas", "spleen", "stomach", "urinary_bladder",
             "aorta", "duodenum", "esophagus", "inferior_vena_cava", "prostate", "small_bowel", "thyroid_gland"):
        return n
    if n in ("adrenal_gland_left", "adrenal_gland_right"):
        return "adrenal_glands"
    if n in ("kidney_left", "kidney_right", "kidney_cyst_left", "kidney_cyst_right"):
        return "kidneys"
    if n.startswith("lung_"):
        return "lungs"
    if n.startswith("vertebrae_") or n == "sacrum":
        return "spine"
    return None
src = data / "totalseg_example" / "example_seg_fast_force_split.nii.gz"
img = nib.load(str(src))
arr = np.asarray(img.dataobj).astype(np.int64)
table = {i: value[ts_region(n)] for i, n in ts_names.items() if ts_region(n)}
save(remap(arr, table), img.affine, work / "labels" / "totalseg_example.nii.gz")
seg19 = nib.load("build-data/labels19/totalseg_example_labels19.nii.gz")
save(np.asarray(seg19.dataobj), seg19.affine, work / "seg" / "totalseg_example.nii.gz")
cases["totalseg_example"] = {
    "source": str(src), "source_sha256": sha256(src), "licence": "CC BY 4.0 (TotalSegmentator example data)",
    "label_ids": {r: [f"{i} {n}" for i, n in ts_names.items() if ts_region(n) == r and (arr == i).any()]
                  for r in names},
    "segmentation": "build-data/labels19/totalseg_example_labels19.nii.gz (scripts/prepare_label_maps.py)"}

# TotalSegmentator dataset subjects: one binary mask per structure, all on the CT's grid (manual labels)
for subject in sorted((data / "totalseg_subjects").glob("s[0-9]*")):
    masks = sorted((subject / "segmentations").glob("*.nii.gz"))
    grid = nib.load(str(masks[0]))
    labels = np.zeros(grid.shape[:3], np.uint8)
    used = {}
    for m in masks:
        structure = m.name[:-len(".nii.gz")]
        region = ts_region(structure)
        if region is None:
            continue
        img = nib.load(str(m))
        if img.shape[:3] != grid.shape[:3] or not np.allclose(img.affine, grid.affine, atol=1e-3):
            raise SystemExit(f"{m}: not on the grid of {masks[0]}")
        voxels = np.asarray(img.dataobj) > 0
        if voxels.any():
            labels[voxels] = value[region]
            used.setdefault(region, []).append(structure)
    name = f"totalseg_{subject.name}"
    save(labels, grid.affine, work / "labels" / f"{name}.nii.gz")
    seg19 = nib.load(f"build-data/labels19/{name}_labels19.nii.gz")
    if not np.allclose(seg19.affine, grid.affine, atol=1e-3) or seg19.shape[:3] != grid.shape[:3]:
        raise SystemExit(f"{name}: the 19-class map is not on the masks' grid")
    save(np.asarray(seg19.dataobj), seg19.affine, work / "seg" / f"{name}.nii.gz")
    cases[name] = {
        "source": str(subject / "segmentations"), "licence": "CC BY 4.0 (TotalSegmentator dataset, Wasserthal et al. "
        "2023, Zenodo 10.5281/zenodo.6802613)", "label_ids": {r: sorted(v) for r, v in used.items()},
        "segmentation": f"build-data/labels19/{name}_labels19.nii.gz (scripts/prepare_label_maps.py)"}

# Learn2Reg AbdomenCTCT: the sform is a bare diagonal; the voxel axes are checked against anatomy and the affine is
# rewritten: +i runs to the patient's left (liver at low i), +j anterior, +k superior -> RAS diag(-2, 2, 2).
L2R = {1: "spleen", 2: "kidneys", 3: "kidneys", 4: "gallbladder", 5: "esophagus", 6: "liver", 7: "stomach",
       8: "aorta", 9: "inferior_vena_cava", 11: "pancreas", 12: "adrenal_glands", 13: "adrenal_glands"}
L2R_19 = {6: 15, 1: 16, 3: 17, 2: 18}  # liver, spleen, left kidney, right kidney
checks = []
for src in sorted((data / "l2r_abdomen_labels").glob("*.nii.gz")):
    img = nib.load(str(src))
    arr = np.asarray(img.dataobj).astype(np.int64)
    c = {l: np.argwhere(arr == l).mean(0) for l in (1, 2, 3, 6, 7, 8)}
    left = c[1][0] > c[6][0] and c[3][0] > c[2][0]          # spleen and left kidney at higher i than liver, R kidney
    anterior = c[7][1] > c[8][1] and c[7][1] > c[1][1]  # stomach in front of the aorta and of the spleen
    superior = c[6][2] > 0.5 * (c[2][2] + c[3][2])           # liver above the kidneys
    if not (left and anterior and superior):
        raise SystemExit(f"{src}: unexpected orientation (left {left}, anterior {anterior}, superior {superior})")
    sp = img.header.get_zooms()[:3]
    affine = np.diag([-sp[0], sp[1], sp[2], 1.0])
    name = f"l2r_{src.name[:-7]}"
    save(remap(arr, {k: value[v] for k, v in L2R.items()}), affine, work / "labels" / f"{name}.nii.gz")
    save(remap(arr, L2R_19), affine, work / "seg" / f"{name}.nii.gz")
    cases[name] = {"source": str(src), "source_sha256": sha256(src),
                   "licence": "Learn2Reg AbdomenCTCT / BTCV terms (unverified; development use)",
                   "label_ids": {v: [k for k in L2R if L2R[k] == v] for v in sorted(set(L2R.values()))},
                   "segmentation": "same file: liver 6 -> 15, spleen 1 -> 16, left kidney 3 -> 17, right kidney 2 -> 18",
                   "orientation": "sform diag(2,2,2) as stored; anatomy: +i patient left, +j anterior, +k superior; "
                                  "rewritten as RAS diag(-2,2,2)"}
    checks.append(name)
print(f"prepared {len(cases)} cases in {work} ({len(checks)} Learn2Reg maps passed the orientation check)")
json.dump({"region_values": value, "cases": cases}, open(work / "prepared.json", "w"), indent=1)
PY

# 3. one region per name
mkdir -p "$OUT" "$WORK/heatmaps" "$WORK/out"
for name in $REGIONS; do
  value=$(/usr/bin/python3 -c "import json,sys; print(json.load(open('$WORK/prepared.json'))['region_values']['$name'])")
  echo "== $name (value $value)"
  "$CTARR" infer-region --name "$name" --label "$value" \
    --seg-dir "$WORK/seg" --labels-dir "$WORK/labels" \
    --threshold "$THRESHOLD" --min-fraction-kept "$MIN_KEPT" --min-threshold "$MIN_THRESHOLD" --margin "${MARGIN_OF[$name]:-$MARGIN}" \
    --note "label value $value of the maps prepared by scripts/make_regions.sh (source label ids per case: regions/manifest.json)" \
    --heatmap "$WORK/heatmaps/$name.nii.gz" \
    --atlas "$ATLAS" --device "$DEVICE" --report \
    -o "$WORK/out/$name.json"
  # the report (NAME_report.json/.md/.png: kept fractions in-sample and leave-one-out) stays in $WORK/out: the
  # regions folder holds region files only
  cp "$WORK/out/$name.json" "$OUT/$name.json"
done

# 4. the manifest
/usr/bin/python3 - "$OUT" "$WORK" "$ATLAS" "$ALL" "$THRESHOLD" "$MARGIN" "$MIN_KEPT" "$MIN_THRESHOLD" <<'PY'
import json, sys
from pathlib import Path
out, work, atlas, names, threshold, margin, min_kept, min_threshold = sys.argv[1:9]
prepared = json.load(open(Path(work) / "prepared.json"))
atlas_manifest = json.load(open(Path(atlas) / "atlas.json"))
regions = {}
for name in names.split():
    p = Path(out) / f"{name}.json"
    if not p.exists():
        continue
    r = json.load(open(p))
    prov = r["provenance"]
    regions[name] = {
        "file": f"{name}.json",
        "boxes": len(r["boxes"]),
        "margin_mm": r["margin_mm"],
        "label_values": prov["label_values"],
        "threshold": prov["threshold"],
        "threshold_requested": prov["threshold_requested"],
        "components": prov["components"],
        "command": prov["command"],
        "cases": [c["name"] for c in prov["cases"]],
        "source_label_ids": {c["name"]: prepared["cases"][c["name"]]["label_ids"].get(name, [])
                             for c in prov["cases"]},
        "fraction_kept": {c["name"]: round(c["fraction_kept"], 4) for c in prov["cases"]},
        "fraction_kept_with_margin": {c["name"]: round(c["fraction_kept_with_margin"], 4) for c in prov["cases"]},
        "fit_dice": {c["name"]: round(c["fit_dice"], 4) for c in prov["cases"]},
    }
manifest = {
    "frame": "atlas",
    "units": "mm",
    "world": "LPS",
    "atlas_id": atlas_manifest["id"],
    "boxes_are": "tight boxes of whole atlas voxels; each region's margin_mm is added on every side at crop time",
    "threshold": float(threshold),
    "threshold_rule": "start at threshold; lower it by 20 % a step, down to min_threshold, while some case keeps "
                      "less than min_fraction_kept of its label inside the boxes grown by the margin "
                      "(per region: threshold = the value used, threshold_requested = the start)",
    "min_fraction_kept": float(min_kept),
    "min_threshold": float(min_threshold),
    "margin_mm": float(margin),
    "command": "scripts/make_regions.sh (ctarr infer-region per region; inputs prepared under build-data/regions)",
    "region_values": prepared["region_values"],
    "inputs": {n: {k: v for k, v in c.items() if k != "label_ids"} for n, c in prepared["cases"].items()},
    "licences": {
        "icrp110": "ICRP Publication 110 reference phantoms: (c) ICRP, distributed with Geant4's ICRP110 example; research use",
        "totalseg_example": "TotalSegmentator example data: CC BY 4.0 (Wasserthal et al., Radiology: AI 2023)",
        "totalseg_subjects": "TotalSegmentator dataset subjects: CC BY 4.0 (Wasserthal et al., Radiology: AI 2023; "
                             "Zenodo 10.5281/zenodo.6802613), attribution required",
        "l2r_abdomen_labels": "Learn2Reg AbdomenCTCT (derived from BTCV): their terms, unverified; development use",
    },
    "regions": regions,
}
(Path(out) / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
print(f"wrote {len(regions)} regions and manifest.json to {out}")
PY
