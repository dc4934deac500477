"""Where a class goes wrong on a labelled real CT: what its true voxels are predicted as, what its predicted voxels
truly are, and the HU and slices of its false positives (whole volume, BatchNorm folded, as `ctarr segment` runs it):

    PYTHONPATH=python /usr/bin/python3 -m ctarr_train.confusion MODEL.safetensors SUBJECT CLASS [CLASS ...]

SUBJECT is a TotalSegmentator subject with its CT under ../shared/data/totalseg_subjects (s0002, s0003, s0009);
CLASS a class name (lung_left) or its output channel (12). Used for the s0002 "lung" in front of the face
(docs/TRAINING.md, run 10).
"""

import argparse

import numpy as np
import torch

from . import classes as cl
from . import evaluate, sources
from .export import load_exported


def confusion(pred, ref, c):
    """{true: {predicted name: voxels}, predicted: {true name: voxels}} for channel c of two label arrays."""
    def name(v):
        return "background" if v == 0 else cl.CLASSES[v - 1]

    def counts(values):
        v, n = np.unique(values, return_counts=True)
        return {name(int(a)): int(b) for a, b in zip(v, n)}
    return {"true": counts(pred[ref == c]), "predicted": counts(ref[pred == c])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("subject")
    ap.add_argument("classes", nargs="+")
    ap.add_argument("--data", default=str(cl.REPO.parent / "shared" / "data"))
    ap.add_argument("--cache", default=str(cl.REPO / "build-data" / "train2" / "cache"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    model, _ = load_exported(args.model)
    src = sources.totalseg_ct_source(f"{args.data}/totalseg_subjects/{args.subject}", args.cache)
    hu, ref = np.asarray(src.arrays["hu"]), np.asarray(src.labels)
    pred = evaluate.predict_volume(model, hu)
    for c in args.classes:
        c = int(c) if c.isdigit() else cl.CLASSES.index(c) + 1
        res = confusion(pred, ref, c)
        print(f"{cl.CLASSES[c - 1]}: true voxels predicted as {res['true']}; predicted voxels truly {res['predicted']}")
        fp = (pred == c) & (ref != c)
        if fp.any():
            print(f"  false positives: {int(fp.sum())} voxels, HU 5/50/95th percentile "
                  f"{np.percentile(hu[fp], [5, 50, 95]).round().tolist()}, slices k {int(np.nonzero(fp)[0].min())}"
                  f"-{int(np.nonzero(fp)[0].max())} of {hu.shape[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
