#!/usr/bin/env bash
# The preview pictures in docs/images/ (docs/CLI.md, "Pictures"), from the repository root:
#   scripts/preview_examples.sh [WORKDIR]
# Needs build/bin/ctarr, /usr/bin/python3 with numpy and nibabel, and ../shared/data for s0009 (skipped without it).
# CTARR_BEFORE=<an older ctarr binary> also makes the preview_before_*.png pictures with it (those in docs/images/
# came from commit eb9dda7, the last with the old picture).
set -euo pipefail
ctarr=${CTARR:-build/bin/ctarr}
work=${1:-build/preview_examples}
images=docs/images
example=examples/totalseg_example/example_ct.nii.gz
s0009=../shared/data/totalseg_subjects/s0009
mkdir -p "$work" "$images"
export CTARR_THREADS=${CTARR_THREADS:-2}

# a good fit through the network
"$ctarr" crop --overwrite --preview --region liver "$example" -o "$work/after"
cp "$work/after/example_ct_preview.png" "$images/preview_after_example.png"
if [[ -n "${CTARR_BEFORE:-}" ]]; then
  "$CTARR_BEFORE" crop --overwrite --preview --region liver "$example" -o "$work/before"
  cp "$work/before/example_ct_preview.png" "$images/preview_before_example.png"
fi

# manual masks, two regions
if [[ -d "$s0009" ]]; then
  "$ctarr" crop --overwrite --preview --region liver --region kidneys --seg "$s0009/segmentations" "$s0009/ct.nii.gz" \
    -o "$work/s0009"
  cp "$work/s0009/ct_preview.png" "$images/preview_after_s0009_seg.png"
  if [[ -n "${CTARR_BEFORE:-}" ]]; then
    "$CTARR_BEFORE" crop --overwrite --preview --region liver --region kidneys --seg "$s0009/segmentations" \
      "$s0009/ct.nii.gz" -o "$work/before_s0009"
    cp "$work/before_s0009/ct_preview.png" "$images/preview_before_s0009_seg.png"
  fi
else
  echo "skipping s0009: $s0009 is absent" >&2
fi

# a refused fit (an empty segmentation: no anatomy) and a scan that is not a patient (a water cylinder with a
# bone-like insert and noise)
/usr/bin/python3 - "$example" "$work" <<'PY'
import sys
import nibabel as nib
import numpy as np
example, work = sys.argv[1], sys.argv[2]
im = nib.load(example)
nib.save(nib.Nifti1Image(np.zeros(im.shape, np.uint8), im.affine), f"{work}/empty_seg.nii.gz")
rng = np.random.default_rng(0)
n = (160, 160, 120)
x, y = np.meshgrid(np.arange(n[0]) - 80, np.arange(n[1]) - 80, indexing="ij")
vol = np.full(n, -1000.0, np.float32)
vol[(x**2 + y**2) < 70**2] = 0.0
vol[((x - 30) ** 2 + y**2) < 15**2] = 300.0
vol += rng.normal(0, 20, n).astype(np.float32)
nib.save(nib.Nifti1Image(vol.astype(np.int16), np.diag([-2.0, -2.0, 3.0, 1.0])), f"{work}/water_phantom.nii.gz")
PY
rc=0
"$ctarr" crop --overwrite --preview --region liver --seg "$work/empty_seg.nii.gz" "$example" -o "$work/refused" || rc=$?
[[ $rc -eq 6 ]] || { echo "expected exit 6 for the empty segmentation, got $rc" >&2; exit 1; }
cp "$work/refused/example_ct_preview.png" "$images/preview_refused.png"
"$ctarr" crop --overwrite --preview --region liver "$work/water_phantom.nii.gz" -o "$work/phantom" || true
[[ -f "$work/phantom/water_phantom_preview.png" ]] && cp "$work/phantom/water_phantom_preview.png" "$images/preview_water_phantom.png"
ls -l "$images"/preview_*.png
