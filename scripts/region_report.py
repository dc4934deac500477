#!/usr/bin/python3
"""Measures regions on labelled cases through `ctarr crop --seg`: how much of each organ a crop keeps and how much
it enriches the organ (its share of the crop's voxels over its share of the whole scan's).

Each case of scripts/make_regions.sh (build-data/regions/prepared.json: seg/<case>.nii.gz, the 19-class map the fit
uses, and labels/<case>.nii.gz, one value per region) is cropped as an image: `ctarr crop --seg seg --region ...
labels`. The crop is of the label map itself, so the kept fraction and the enrichment are counted exactly, on the
case's own grid, through the same fit and box mapping a CT of that case would get (a CT on the same grid gets the
same index ranges). Leave-one-out kept fractions come from `ctarr infer-region --report` (NAME_report.json) when
--loo-dir holds them.

  scripts/region_report.py --regions-dir regions --atlas atlas --out build-data/regions/report_after.json \\
      [--loo-dir build-data/regions/out] [--work build-data/regions] [--markdown FILE] [--label TEXT]

Prints one line per region; exits 1 when some case keeps less than --min-kept of a cropped organ (0.99).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PER_CASE_COLUMNS = ("liver", "spleen", "kidneys", "pancreas", "stomach", "heart")


def crop_case(ctarr, case, seg, labels, regions, regions_dir, atlas, tmp):
    """Runs ctarr crop on the label map; returns {region: [crop arrays]} and the command's output."""
    out = Path(tmp) / case
    cmd = [ctarr, "crop", "--device", "cpu", "--seg", str(seg), "--regions-dir", str(regions_dir),
           "--atlas", str(atlas), "-o", str(out), "--overwrite"]
    for r in regions:
        cmd += ["--region", r]
    cmd.append(str(labels))
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode not in (0, 8):  # 8: some region misses the scan entirely
        raise SystemExit(f"{case}: {' '.join(cmd)} exited {run.returncode}:\n{run.stderr}{run.stdout}")
    stem = labels.name[:-len(".nii.gz")]
    crops = {r: [] for r in regions}
    for f in sorted(os.listdir(out)) if out.is_dir() else []:
        for r in regions:
            if re.fullmatch(rf"{re.escape(stem)}_{re.escape(r)}(_\d+)?\.nii\.gz", f):
                crops[r].append(np.asarray(nib.load(str(out / f)).dataobj))
    return crops, run.stderr + run.stdout


def image_crops(ctarr, case, seg, image, regions, regions_dir, atlas, tmp, labels):
    """Crops a real CT; returns {region: [the label map cut to each written index box of its record]}."""
    crop_case(ctarr, case, seg, image, regions, regions_dir, atlas, tmp)
    stem = image.name[:-len(".nii.gz")] if image.name.endswith(".nii.gz") else image.stem
    out = {}
    for r in regions:
        record = Path(tmp) / case / f"{stem}_{r}.json"
        boxes = json.load(open(record))["boxes"] if record.exists() else []
        out[r] = []
        for b in boxes:
            if b.get("missed_scan"):
                continue
            lo, hi = b["index_box_in_scan"]["start"], b["index_box_in_scan"]["end"]
            out[r].append(labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    return out


def _cell(r, key_worst, key_median, digits=3):
    if r is None or r.get(key_worst) is None:
        return "—"
    return f"{r[key_worst]:.{digits}f} / {r[key_median]:.{digits}f}"


def comparison_markdown(before, after):
    """Per region: box size, cases, kept (in-sample crops) and leave-one-out kept, enrichment; before | after."""
    names = list(after["regions"]) + [n for n in before["regions"] if n not in after["regions"]]
    out = ["| region | box mm before → after | cases before / after | kept worst / median, before | kept worst / "
           "median, after | leave-one-out kept worst / median, after | enrichment worst / median, before | "
           "enrichment worst / median, after |", "|---|---|---|---|---|---|---|---|"]
    for n in names:
        b, a = before["regions"].get(n), after["regions"].get(n)
        box = lambda r: " × ".join(f"{x:.0f}" for x in r["box_mm"]) if r else "—"  # noqa: E731
        out.append(f"| {n} | {box(b)} → {box(a)} | {len(b['cases']) if b else '—'} / {len(a['cases']) if a else '—'} | "
                   f"{_cell(b, 'kept_worst', 'kept_median')} | {_cell(a, 'kept_worst', 'kept_median')} | "
                   f"{_cell(a, 'loo_kept_worst', 'loo_kept_median')} | "
                   f"{_cell(b, 'enrichment_worst', 'enrichment_median', 2)} | "
                   f"{_cell(a, 'enrichment_worst', 'enrichment_median', 2)} |")
    cases = sorted({c for r in after["regions"].values() for c in r["cases"]} |
                   {c for r in before["regions"].values() for c in r["cases"]})
    shown = [n for n in PER_CASE_COLUMNS if n in names]
    out += ["", f"Per case ({', '.join(shown)}; every region in the JSON files): kept fraction and enrichment (the "
            "organ's share of the crop's voxels over its share of the scan's), before → after.", ""]
    out.append("| case | " + " | ".join(shown) + " |")
    out.append("|---|" + "---|" * len(shown))
    for c in cases:
        cells = []
        for n in shown:
            b = before["regions"].get(n, {}).get("cases", {}).get(c)
            a = after["regions"].get(n, {}).get("cases", {}).get(c)
            if not a and not b:
                cells.append("")
                continue
            f = lambda x: f"{x['kept']:.3f} ({x['enrichment']:.1f}×)" if x else "—"  # noqa: E731
            cells.append(f"{f(b)} → {f(a)}")
        if any(cells):
            out.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regions-dir", type=Path, default=REPO / "regions")
    ap.add_argument("--atlas", type=Path, default=REPO / "atlas")
    ap.add_argument("--work", type=Path, default=REPO / "build-data" / "regions")
    ap.add_argument("--loo-dir", type=Path, help="folder of NAME_report.json (ctarr infer-region --report)")
    ap.add_argument("--ctarr", default=str(REPO / "build" / "bin" / "ctarr"))
    ap.add_argument("--out", type=Path, required=True, help="JSON with every number")
    ap.add_argument("--markdown", type=Path, help="also write the per-region table here")
    ap.add_argument("--label", default="", help="what these regions are (recorded)")
    ap.add_argument("--image", action="append", default=[], metavar="CASE=PATH",
                    help="crop this real CT of CASE (same grid as its label map) instead of the label map and count "
                         "the organ inside the written index boxes of its records (repeatable)")
    ap.add_argument("--only-images", action="store_true", help="measure only the cases given with --image")
    ap.add_argument("--min-kept", type=float, default=0.99)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                    help="no cropping: write --markdown comparing two JSON files this script wrote")
    args = ap.parse_args()
    if args.compare:
        before, after = (json.load(open(f)) for f in args.compare)
        if not args.markdown:
            raise SystemExit("error: --compare needs --markdown")
        args.markdown.write_text(comparison_markdown(before, after))
        return 0

    prepared = json.load(open(args.work / "prepared.json"))
    values = prepared["region_values"]
    shipped = {p.stem for p in args.regions_dir.glob("*.json") if p.name != "manifest.json"}
    names = [n for n in values if n in shipped]
    per_region = {n: {"cases": {}} for n in names}
    images = dict(i.split("=", 1) for i in args.image)
    unknown = set(images) - set(prepared["cases"])
    if unknown:
        raise SystemExit(f"error: --image for unknown cases {sorted(unknown)}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in sorted(prepared["cases"]):
            if args.only_images and case not in images:
                continue
            labels_path = args.work / "labels" / f"{case}.nii.gz"
            labels_img = nib.load(str(labels_path))
            labels = np.asarray(labels_img.dataobj)
            counts = np.bincount(labels.ravel(), minlength=max(values.values()) + 1)
            held = [n for n in names if counts[values[n]] > 0]
            if not held:
                continue
            seg = args.work / "seg" / f"{case}.nii.gz"
            if case in images:
                ct = nib.load(images[case])
                if ct.shape[:3] != labels.shape[:3] or not np.allclose(ct.affine, labels_img.affine, atol=1e-3):
                    raise SystemExit(f"error: {images[case]} is not on the grid of {labels_path}")
                crops = image_crops(args.ctarr, case, seg, Path(images[case]), held, args.regions_dir, args.atlas,
                                    tmp, labels)
            else:
                crops, _ = crop_case(args.ctarr, case, seg, labels_path, held, args.regions_dir, args.atlas, tmp)
            for n in held:
                v, total = values[n], int(counts[values[n]])
                kept = sum(int(np.count_nonzero(c == v)) for c in crops[n])
                crop_voxels = sum(int(c.size) for c in crops[n])
                share_crop = kept / crop_voxels if crop_voxels else 0.0
                share_scan = total / labels.size
                per_region[n]["cases"][case] = {
                    "kept": round(kept / total, 5), "organ_voxels": total, "crop_voxels": crop_voxels,
                    "scan_voxels": int(labels.size), "crop_fraction_of_scan": round(crop_voxels / labels.size, 4),
                    "enrichment": round(share_crop / share_scan, 3) if crop_voxels else 0.0}
            kept_now = ", ".join(f"{n} {per_region[n]['cases'][case]['kept']:.3f}" for n in held)
            print(f"{case}: {kept_now}", flush=True)

    failed = []
    for n in names:
        r = per_region[n]
        region = json.load(open(args.regions_dir / f"{n}.json"))
        lo = np.min([b["lower"] for b in region["boxes"]], axis=0)
        hi = np.max([b["upper"] for b in region["boxes"]], axis=0)
        r["boxes"] = len(region["boxes"])
        r["box_mm"] = [round(float(x), 1) for x in hi - lo]
        r["margin_mm"] = region["margin_mm"]
        r["atlas_id"] = region.get("provenance", {}).get("atlas_id")
        kept = [c["kept"] for c in r["cases"].values()]
        enrich = [c["enrichment"] for c in r["cases"].values()]
        r["kept_worst"], r["kept_median"] = (min(kept), float(np.median(kept))) if kept else (None, None)
        r["enrichment_median"] = float(np.median(enrich)) if enrich else None
        r["enrichment_worst"] = min(enrich) if enrich else None
        for case, c in r["cases"].items():
            if c["kept"] < args.min_kept:
                failed.append(f"{n} on {case}: kept {c['kept']:.4f}")
        report = args.loo_dir / f"{n}_report.json" if args.loo_dir else None
        if report and report.exists():
            rep = json.load(open(report))
            loo = [c["leave_one_out"]["fraction_kept_with_margin"] for c in rep["cases"]
                   if isinstance(c.get("leave_one_out"), dict) and "fraction_kept_with_margin" in c["leave_one_out"]]
            if loo:
                r["loo_kept_worst"], r["loo_kept_median"] = min(loo), float(np.median(loo))
                r["loo_cases"] = len(loo)
        print(f"{n:20s} box {r['box_mm']} mm, {len(kept)} cases, kept worst {r['kept_worst']} median "
              f"{r['kept_median']}, enrichment median {r['enrichment_median']}"
              + (f", leave-one-out worst {r.get('loo_kept_worst'):.4f}" if "loo_kept_worst" in r else ""))

    result = {"label": args.label, "regions_dir": str(args.regions_dir), "atlas": str(args.atlas),
              "command": " ".join(sys.argv), "min_kept": args.min_kept, "below_min_kept": failed,
              "measure": "kept = organ voxels inside the crop / organ voxels in the scan; enrichment = (organ voxels "
                         "/ crop voxels) / (organ voxels / scan voxels); crops by `ctarr crop --seg` of each case's "
                         "label map, boxes with their margin, clipped to the scan",
              "regions": per_region}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        rows = ["| region | box (mm, before margin) | cases | kept worst / median | leave-one-out worst / median "
                "| enrichment worst / median |", "|---|---|---|---|---|---|"]
        for n in names:
            r = per_region[n]
            loo = (f"{r['loo_kept_worst']:.3f} / {r['loo_kept_median']:.3f}" if "loo_kept_worst" in r else "—")
            rows.append(f"| {n} | {' × '.join(f'{x:.0f}' for x in r['box_mm'])} | {len(r['cases'])} | "
                        f"{r['kept_worst']:.3f} / {r['kept_median']:.3f} | {loo} | "
                        f"{r['enrichment_worst']:.2f} / {r['enrichment_median']:.2f} |")
        args.markdown.write_text("\n".join(rows) + "\n")
    if failed:
        print("below --min-kept:\n  " + "\n  ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
