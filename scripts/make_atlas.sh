#!/usr/bin/env bash
# Builds the shipped atlas (atlas/atlas.nii.gz + atlas/atlas.json) from ../shared/data, reproducibly.
#
#   scripts/make_atlas.sh [OUT_DIR]          (default OUT_DIR: atlas/)
#
# Environment: CTARR (the ctarr binary, default build/bin/ctarr), CTARR_SHARED_DATA (default ../shared/data),
# CTARR_DEVICE (default cpu). Intermediate label maps go to build-data/labels19 (git-ignored; never commit them).
#
# Sources (19-class label maps made by scripts/prepare_label_maps.py):
#   ICRP 110 adult male and female phantoms: whole body, every class: they define the mean space;
#   TotalSegmentator's example segmentation: chest-abdomen-pelvis, 14 classes: averaged in where it sees and labels;
#   the ten TotalSegmentator dataset subjects (totalseg_subjects/, manual masks; whole body, trunk, abdomen, pelvis,
#   head and neck): each averaged in for the classes it labels, where its field of view reaches.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DATA=${CTARR_SHARED_DATA:-../shared/data}
CTARR=${CTARR:-build/bin/ctarr}
DEVICE=${CTARR_DEVICE:-cpu}
OUT=${1:-atlas}
LABELS=build-data/labels19

if [[ ! -x "$CTARR" ]]; then
  echo "error: ctarr binary not found at $CTARR (build it: cmake -S . -B build && cmake --build build -j2, or set CTARR)" >&2
  exit 2
fi
if [[ ! -d "$DATA/icrp110" || ! -d "$DATA/totalseg_example" || ! -d "$DATA/totalseg_subjects" ]]; then
  echo "error: $DATA/icrp110, $DATA/totalseg_example and $DATA/totalseg_subjects are needed (set CTARR_SHARED_DATA)" >&2
  exit 2
fi

# 1. 19-class label maps (checked against anatomy by the script; it exits non-zero when a check fails)
/usr/bin/python3 scripts/prepare_label_maps.py --data "$DATA" --out "$LABELS"

# 2. the TotalSegmentator subjects: one source each, with what its field of view holds
SUBJECTS=()
for f in "$LABELS"/totalseg_s[0-9]*_labels19.nii.gz; do
  id=$(basename "$f" _labels19.nii.gz); id=${id#totalseg_}
  held=$(/usr/bin/python3 -c "import json,sys; o=json.load(open('$LABELS/labels19_provenance.json'))['outputs']['totalseg_${id}_labels19.nii.gz']; print(', '.join(c for c in o['voxels']))")
  SUBJECTS+=("$f" --note "TotalSegmentator dataset subject $id ($DATA/totalseg_subjects/$id/segmentations, manual masks, CC BY 4.0) grouped into ctarr's 19 classes by scripts/prepare_label_maps.py; in view and labelled: $held")
done

# 3. the atlas
"$CTARR" build-atlas \
  "$LABELS/icrp110_AM_labels19.nii.gz" \
  --note "ICRP Publication 110 adult male reference computational phantom ($DATA/icrp110/ICRP110_AM_organs.nii.gz), organ ids grouped into ctarr's 19 classes by scripts/prepare_label_maps.py (ribs, scapulae, clavicles and pelvis split at the body midline)" \
  "$LABELS/icrp110_AF_labels19.nii.gz" \
  --note "ICRP Publication 110 adult female reference computational phantom ($DATA/icrp110/ICRP110_AF_organs.nii.gz), organ ids grouped into ctarr's 19 classes by scripts/prepare_label_maps.py (ribs, scapulae, clavicles and pelvis split at the body midline)" \
  "$LABELS/totalseg_example_labels19.nii.gz" \
  --note "TotalSegmentator's example segmentation ($DATA/totalseg_example/example_seg_fast_force_split.nii.gz, model-made, v2 labels) grouped into ctarr's 19 classes by scripts/prepare_label_maps.py; chest-abdomen-pelvis field of view, no skull, cervical spine, sternum, brain or heart" \
  "${SUBJECTS[@]}" \
  --licence "Derived data. ICRP Publication 110 phantoms: (c) ICRP, distributed with Geant4's ICRP110 example, research use. TotalSegmentator example data and dataset subjects: CC BY 4.0 (Wasserthal et al., TotalSegmentator, Radiology: AI 2023; dataset Zenodo 10.5281/zenodo.6802613), attribution required." \
  --spacing 3 --margin 30 --device "$DEVICE" \
  -o "$OUT"

echo "atlas written to $OUT (manifest: $OUT/atlas.json)"
