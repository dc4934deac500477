"""The QA page of a dataset-mode run over six real cases, and its screenshot for docs/ (issue 16):

    /usr/bin/python3 scripts/qa_page_demo.py [--ctarr build/bin/ctarr] [--out build-data/qa_demo] [--screenshot F]

Builds an nnU-Net-style dataset from the CTs in ../shared/data (TotalSegmentator example and subjects s0002, s0003,
s0009; CC BY 4.0): imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz holding the liver (1) only, and a folder of
19-class label maps (build-data/labels19, scripts/prepare_label_maps.py) for --seg-dir. Three cases are made to go
wrong: `example_rot90` has its voxel array turned 90 degrees in-plane with the header kept (a lying header, which the
fit must find), `example_truncated` is the example CT cut to its first 40 KB (unreadable: exit 3), and
`example_no_anatomy` comes with an empty segmentation (the fit is refused: exit 6, and its picture says so). Then

    ctarr crop --dataset D --seg-dir S --region liver --preview -o OUT

writes OUT/summary.html, and headless Chromium takes its screenshot.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
LIVER = 15  # ctarr class value (share/classes.json order, 1-based)


def save(array, affine, header, path):
    img = nib.Nifti1Image(array, affine, header)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    nib.save(img, str(path))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ctarr", default=str(REPO / "build" / "bin" / "ctarr"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--labels19", default=str(REPO / "build-data" / "labels19"))
    ap.add_argument("--out", default=str(REPO / "build-data" / "qa_demo"))
    ap.add_argument("--screenshot", default=str(REPO / "docs" / "images" / "qa_page.png"))
    args = ap.parse_args(argv)
    data, labels19, out = Path(args.data), Path(args.labels19), Path(args.out)
    sources = {"example": data / "totalseg_example" / "example_ct.nii.gz"}
    for s in ("s0002", "s0003", "s0009"):
        sources[s] = data / "totalseg_subjects" / s / "ct.nii.gz"
    label_names = {"example": "totalseg_example"} | {s: f"totalseg_{s}" for s in ("s0002", "s0003", "s0009")}
    for name, path in list(sources.items()) + [(n, labels19 / f"{label_names[n]}_labels19.nii.gz") for n in label_names]:
        if not path.exists():
            sys.exit(f"error: {path} not found (the shared data, and scripts/prepare_label_maps.py for the label maps)")

    ds, segs, crops = out / "dataset", out / "segs", out / "out"
    for d in (ds / "imagesTr", ds / "labelsTr", segs):
        d.mkdir(parents=True, exist_ok=True)
    subprocess.run(["rm", "-rf", str(crops)], check=True)
    for name, ct_path in sources.items():
        ct = nib.load(str(ct_path))
        seg = nib.load(str(labels19 / f"{label_names[name]}_labels19.nii.gz"))
        lab = np.asarray(seg.dataobj).astype(np.uint8)
        variants = [(name, lambda a: a)]
        if name == "example":
            variants.append(("example_rot90", lambda a: np.ascontiguousarray(np.rot90(a, 1, (0, 1)))))
        for case, turn in variants:
            hu = turn(np.asarray(ct.dataobj))
            save(hu, ct.affine, ct.header, ds / "imagesTr" / f"{case}_0000.nii.gz")
            save(turn((lab == LIVER).astype(np.uint8)), ct.affine, None, ds / "labelsTr" / f"{case}.nii.gz")
            save(turn(lab), ct.affine, None, segs / f"{case}.nii.gz")
    whole = (ds / "imagesTr" / "example_0000.nii.gz").read_bytes()
    (ds / "imagesTr" / "example_truncated_0000.nii.gz").write_bytes(whole[:40000])
    (ds / "labelsTr" / "example_truncated.nii.gz").write_bytes((ds / "labelsTr" / "example.nii.gz").read_bytes())
    (segs / "example_truncated.nii.gz").write_bytes((segs / "example.nii.gz").read_bytes())
    for sub in ("imagesTr", "labelsTr"):
        src = ds / sub / ("example_0000.nii.gz" if sub == "imagesTr" else "example.nii.gz")
        dst = ds / sub / ("example_no_anatomy_0000.nii.gz" if sub == "imagesTr" else "example_no_anatomy.nii.gz")
        dst.write_bytes(src.read_bytes())
    ct = nib.load(str(sources["example"]))
    save(np.zeros(ct.shape, np.uint8), ct.affine, None, segs / "example_no_anatomy.nii.gz")

    cmd = [args.ctarr, "crop", "--dataset", str(ds), "--seg-dir", str(segs), "--region", "liver", "--preview",
           "-o", str(crops)]
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    run = subprocess.run(cmd)
    print(f"exit {run.returncode} in {time.time() - t0:.1f} s (9: some cases failed, as intended)")
    page = crops / "summary.html"
    if not page.exists():
        sys.exit(f"error: {page} was not written")
    print(f"{page}: {page.stat().st_size} bytes")
    shot = Path(args.screenshot)
    shot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--virtual-time-budget=10000", "--window-size=1500,1100", f"--screenshot={shot}",
                    f"file://{page}"], check=True, stderr=subprocess.DEVNULL)
    print(f"screenshot: {shot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
