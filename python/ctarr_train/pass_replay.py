"""Replays the choice among network passes (`Pipeline::segment_and_fit`) on crop checks that ran every pass:

    PYTHONPATH=python /usr/bin/python3 -m ctarr_train.crop_check --crop-args '--turned-passes-below 1.01' --json ALL.json
    PYTHONPATH=python /usr/bin/python3 -m ctarr_train.pass_replay ALL.json [--below 0.45 0.5 0.55]

For each threshold (a pass over the scan as stored with a fit Dice at or above it, and an orientation search,
stops there) and each score, how many of the crops end with the orientation that undoes their array turn, and how
many network passes that costs. The scores: "sqrt" is what the C++ uses (src/turns.cpp: fit Dice x sqrt(classes),
a turned pass must beat the as-stored one by kTurnedPassMargin x sqrt(classes)); "classes" is the earlier Dice x
classes (margin 0.02 x classes). A fit searches the orientation with at least 4 classes (LandmarkOptions).
"""

import argparse
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np

from . import classes as cl

MARGIN = 0.02           # kTurnedPassMargin (include/ctarr/pipeline.hpp)
MIN_SEARCH_CLASSES = 4  # LandmarkOptions::min_classes_for_search
# the orientation the fit must report for an array turned by crop_check's VARIANTS, for a header whose in-plane axes
# have the handedness of RAS/LPS; a mirrored header (e.g. LAS) sees the opposite world turn
EXPECTED = {"original": "identity", "rot90": "rot270", "rot180": "rot180", "rot270": "rot90", "zflip": "zflip"}
SCORES = {
    "sqrt": (lambda d, c: d * math.sqrt(c), lambda c: MARGIN * math.sqrt(c)),
    "classes": (lambda d, c: d * c, lambda c: MARGIN * c),
}


def expected_orientation(variant, mirrored):
    if mirrored and variant in ("rot90", "rot270"):
        return variant
    return EXPECTED[variant]


def choose(passes, below, score="sqrt"):
    """The pass the C++ keeps (None when every fit failed) and how many passes it runs. `passes` in run order, the
    pass over the scan as stored first, each {turn, dice, classes, orientation, error}."""
    f, margin = SCORES[score]
    best, best_score, runs = None, 0.0, 0
    for p in passes:
        if p["turn"] != "identity" and best is not None:
            if below <= 0 or (best["dice"] >= below and best["classes"] >= MIN_SEARCH_CLASSES):
                break
        runs += 1
        if p.get("error"):
            continue
        s = f(p["dice"], p["classes"])
        need = margin(p["classes"]) if best is not None and best["turn"] == "identity" else 0.0
        if best is None or s > best_score + need:
            best, best_score = p, s
    return best, runs


def mirrored_headers(data_dir):
    """{case name: True where the image's in-plane axes are mirrored against RAS} for crop_check's cases."""
    from .crop_check import cases
    out = {}
    for name, ct, _, _ in cases(data_dir):
        if Path(ct).is_file():
            out[name] = bool(np.linalg.det(nib.load(str(ct)).affine[:2, :2]) < 0)
    return out


def replay(rows, mirrored, thresholds, scores=("sqrt", "classes")):
    out = []
    for score in scores:
        for below in thresholds:
            right, runs, wrong = 0, 0, []
            for r in rows:
                best, n = choose(r.get("network_passes", []), below, score)
                runs += n
                want = expected_orientation(r["variant"], mirrored.get(r["case"], False))
                if best is not None and best.get("orientation") == want:
                    right += 1
                else:
                    wrong.append(f"{r['case']}/{r['variant']}")
            out.append({"score": score, "below": below, "right": right, "crops": len(rows), "passes": runs,
                        "wrong": wrong})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("crop_check_json")
    ap.add_argument("--below", type=float, nargs="+", default=[0.45, 0.5, 0.55])
    ap.add_argument("--data", default=str(cl.REPO.parent / "shared" / "data"))
    args = ap.parse_args(argv)
    rows = json.loads(Path(args.crop_check_json).read_text())["rows"]
    if any(len(r.get("network_passes", [])) < 2 for r in rows):
        print("warning: some crops ran one pass only; run crop_check with --crop-args '--turned-passes-below 1.01'")
    for res in replay(rows, mirrored_headers(args.data), args.below):
        print(f"score {res['score']:8s} below {res['below']}: {res['right']} of {res['crops']} orientations right, "
              f"{res['passes']} passes" + (f"; wrong: {', '.join(res['wrong'])}" if res["wrong"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
