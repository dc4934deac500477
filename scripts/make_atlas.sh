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
#   TotalSegmentator's example segmentation: chest-abdomen-pelvis, 14 classes: averaged in where it sees and labels.
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
if [[ ! -d "$DATA/icrp110" || ! -d "$DATA/totalseg_example" ]]; then
  echo "error: $DATA/icrp110 and $DATA/totalseg_example are needed (set CTARR_SHARED_DATA)" >&2
  exit 2
fi

# 1. 19-class label maps (checked against anatomy by the script; it exits non-zero when a check fails)
/usr/bin/python3 scripts/prepare_label_maps.py --data "$DATA" --out "$LABELS"

# 2. the atlas
"$CTARR" build-atlas \
  "$LABELS/icrp110_AM_labels19.nii.gz" \
  --note "ICRP Publication 110 adult male reference computational phantom ($DATA/icrp110/ICRP110_AM_organs.nii.gz), organ ids grouped into ctarr's 19 classes by scripts/prepare_label_maps.py (ribs, scapulae, clavicles and pelvis split at the body midline)" \
  "$LABELS/icrp110_AF_labels19.nii.gz" \
  --note "ICRP Publication 110 adult female reference computational phantom ($DATA/icrp110/ICRP110_AF_organs.nii.gz), organ ids grouped into ctarr's 19 classes by scripts/prepare_label_maps.py (ribs, scapulae, clavicles and pelvis split at the body midline)" \
  "$LABELS/totalseg_example_labels19.nii.gz" \
  --note "TotalSegmentator's example segmentation ($DATA/totalseg_example/example_seg_fast_force_split.nii.gz, model-made, v2 labels) grouped into ctarr's 19 classes by scripts/prepare_label_maps.py; chest-abdomen-pelvis field of view, no skull, cervical spine, sternum, brain or heart" \
  --licence "Derived data. ICRP Publication 110 phantoms: (c) ICRP, distributed with Geant4's ICRP110 example, research use. TotalSegmentator example data: CC BY 4.0 (Wasserthal et al., TotalSegmentator, Radiology: AI 2023), attribution required." \
  --spacing 3 --margin 30 --device "$DEVICE" \
  -o "$OUT"

echo "atlas written to $OUT (manifest: $OUT/atlas.json)"
