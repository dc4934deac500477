"""`ctarr crop` through the network (no --seg) on every real CT in ../shared/data, and on copies whose voxel arrays
are turned 90/180/270 degrees in-plane or flipped in z with the header kept (the anatomy then lies to the header, as
in a mislabelled scan):

    PYTHONPATH=python /usr/bin/python3 -m ctarr_train.crop_check [--ctarr build/bin/ctarr] [--json OUT] [--quick]

Per case and variant: the exit code, the orientation the fit found (it must undo the turn), and where the case has
labels, the kept fraction of the region's anatomy: labelled voxels inside the written index boxes / all labelled
voxels of those classes. The labels are turned with the voxels, so they stay the truth. --quick: originals only.
Also per row: how many network passes the fit tried (`passes`; more than one: the turned passes ran, see
`ctarr crop --turned-passes-below`), which one it kept (`kept_pass`), and each pass's turn, the orientation its fit
found, its fit Dice and classes (`network_passes`).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from . import classes as cl
from .segment_eval import example_labels, subject_labels, thorax_labels

REGION_CLASSES = {"liver": ["liver"], "spleen": ["spleen"], "kidneys": ["kidney_left", "kidney_right"],
                  "brain": ["brain"], "heart": ["heart"], "lungs": ["lung_left", "lung_right"],
                  "urinary_bladder": ["urinary_bladder"]}
# the array turns and the orientation name the fit should report for them (scanner -> atlas rotation undoing it)
VARIANTS = {"original": lambda a: a, "rot90": lambda a: np.rot90(a, 1, (0, 1)), "rot180": lambda a: np.rot90(a, 2, (0, 1)),
            "rot270": lambda a: np.rot90(a, 3, (0, 1)), "zflip": lambda a: a[:, :, ::-1]}


def cases(data):
    data = Path(data)
    s = data / "totalseg_subjects"
    th = lambda: thorax_labels(data)  # noqa: E731
    return [
        ("totalseg_example", data / "totalseg_example" / "example_ct.nii.gz", lambda: example_labels(data),
         ["liver", "spleen", "kidneys"]),
        ("totalseg_s0009", s / "s0009" / "ct.nii.gz", lambda: subject_labels(s / "s0009"),
         ["liver", "spleen", "kidneys", "urinary_bladder"]),
        ("totalseg_s0002", s / "s0002" / "ct.nii.gz", lambda: subject_labels(s / "s0002"), ["brain", "lungs"]),
        ("totalseg_s0003", s / "s0003" / "ct.nii.gz", lambda: subject_labels(s / "s0003"), ["brain"]),
        ("thorax_cta", data / "totalseg_example" / "thorax_cta" / "ct_1p5mm.nii.gz", lambda: th()[:3], ["heart"]),
        ("invesalius_head", data / "head_ct" / "cranium_ct.nii.gz", None, ["brain"]),
        ("gantry_tilt_head_dicom", data / "dicom" / "gantry_tilt_head", None, ["brain"]),
    ]


def kept_fraction(record, labels, classes):
    ids = [cl.LABEL[c] for c in classes]
    mask = np.isin(labels, ids)
    total = int(mask.sum())
    if total == 0:
        return None
    inside = np.zeros_like(mask)
    for b in record["boxes"]:
        box = b.get("index_box_written") or b.get("index_box_in_scan")
        if not box or b.get("missed_scan"):
            continue
        (i0, j0, k0), (i1, j1, k1) = box["start"], box["end"]
        inside[max(i0, 0):i1, max(j0, 0):j1, max(k0, 0):k1] = True
    return round(float((mask & inside).sum()) / total, 4)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ctarr", default=str(cl.REPO / "build" / "bin" / "ctarr"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=str(cl.REPO.parent / "shared" / "data"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--crop-args", default="", help="more `ctarr crop` options, e.g. '--turned-passes-below 0'")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, ct, labels_fn, regions in cases(args.data):
            if not Path(ct).exists():
                continue
            labels = None
            if labels_fn is not None:
                lab, lab_affine, _ = labels_fn()
                img = nib.load(str(ct))
                if lab.shape != img.shape[:3] or not np.allclose(lab_affine, img.affine, atol=1e-3):
                    lab = None  # a label map on another grid (the CTA's heart): exit code and orientation only
                labels = lab
            variants = ["original"] if (args.quick or Path(ct).is_dir()) else list(VARIANTS)
            for v in variants:
                src = str(ct)
                if v != "original":
                    img = nib.load(str(ct))
                    arr = np.ascontiguousarray(VARIANTS[v](np.asarray(img.dataobj)))
                    src = os.path.join(tmp, f"{name}_{v}.nii.gz")
                    nib.save(nib.Nifti1Image(arr, img.affine, img.header), src)
                out = os.path.join(tmp, f"out_{name}_{v}")
                cmd = [args.ctarr, "crop", src, "-o", out] + sum((["--region", r] for r in regions), [])
                if args.model:
                    cmd += ["--model", args.model]
                cmd += args.crop_args.split()
                t0 = time.time()
                run = subprocess.run(cmd, capture_output=True, text=True)
                row = {"case": name, "variant": v, "exit": run.returncode, "seconds": round(time.time() - t0, 1)}
                stem = Path(src).name.split(".")[0]
                for r in regions:
                    rec_path = os.path.join(out, f"{stem}_{r}.json")
                    if not os.path.exists(rec_path):
                        continue
                    with open(rec_path) as f:
                        rec = json.load(f)
                    row["orientation"] = rec.get("transform", {}).get("orientation")
                    row["fit_dice"] = rec.get("fit", {}).get("dice")
                    passes = rec.get("fit", {}).get("network_passes", [])
                    row["passes"] = len(passes)
                    row["kept_pass"] = next((p["turn"] for p in passes if p.get("kept")), None)
                    row["network_passes"] = [{k: p[k] for k in ("turn", "orientation", "dice", "classes", "error")
                                              if k in p} for p in passes]
                    if labels is not None:
                        row[f"kept_{r}"] = kept_fraction(rec, VARIANTS[v](labels), REGION_CLASSES[r])
                if run.returncode != 0:
                    row["error"] = run.stderr.strip().splitlines()[-1][-300:] if run.stderr.strip() else ""
                rows.append(row)
                print(json.dumps(row), flush=True)
    ok = sum(r["exit"] == 0 for r in rows)
    print(f"{ok} of {len(rows)} crops exited 0")
    if args.json:
        with open(args.json, "w") as f:
            command = "PYTHONPATH=python /usr/bin/python3 -m ctarr_train.crop_check"
            if args.crop_args:
                command += f" --crop-args '{args.crop_args}'"
            json.dump({"command": command, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
