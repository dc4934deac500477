#!/usr/bin/python3
"""Per-class Dice of a ctarr U-Net (models/<name>.safetensors + card) with the PyTorch reference network.

Inference is what the C++ does (src/network.cpp, mirrored by ctarr_unet.sliding_window_predict): the scan on a
3 mm grid in canonical LPS orientation, three HU windows, 64^3 tiles with 50 % overlap, softmax per tile,
Gaussian-weighted average, argmax. float32, as in C++.

Test cases:
  real     the TotalSegmentator example CT (totalseg_example/example_ct.nii.gz, 3 mm) against its model-made
           segmentation mapped to 19 classes. NOTE: this CT is also a training sample (there is only one real
           labelled CT here, so no hold-out is possible): its Dice measures fitting, not generalisation. Classes it
           does not label (skull, C-spine, sternum, brain, heart) are reported as predicted volume only.
  icrp     a CT rendered from an ICRP 110 phantom (default AF) with a held-out seed (tissue HU, contrast phase,
           noise, blur drawn with --seed, never used in training draws), canonical geometry, over the z range
           that holds the 19 classes. The phantom's anatomy is in training too: this checks the rendering
           domain, not new anatomy.

Usage:
  /usr/bin/python3 scripts/evaluate.py --model models/ctarr-unet.safetensors [--json build-data/eval.json]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ctarr_labels as cl  # noqa: E402
import ctarr_unet as cu  # noqa: E402
import train_data as td  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_model(path):
    with open(os.path.splitext(path)[0] + ".json") as f:
        card = json.load(f)
    if cu.sha256_file(path) != card["weights"]["sha256"]:
        raise SystemExit(f"error: {path}: sha256 differs from its card")
    model = cu.CtarrUNet(filters=card["filters"])
    model.load_state_dict(cu.load_safetensors(path))
    model.eval()
    return model, card


def dice_table(pred, truth, labelled):
    rows = {}
    for c in range(1, td.NUM_OUT):
        name = cl.CLASS_NAMES[c - 1]
        p, t = pred == c, truth == c
        n_p, n_t = int(p.sum()), int(t.sum())
        if labelled[c] and n_t > 0:
            rows[name] = {"dice": round(2.0 * int((p & t).sum()) / (n_p + n_t), 4), "voxels_true": n_t,
                          "voxels_pred": n_p}
        else:
            rows[name] = {"dice": None, "voxels_true": n_t if labelled[c] else None, "voxels_pred": n_p,
                          "note": "not labelled in this scan" if not labelled[c] else "absent from this scan"}
    return rows


def predict(model, hu_kji, patch, overlap):
    x = td.window(torch.from_numpy(np.asarray(hu_kji, np.float32)))
    prob = cu.sliding_window_predict(model, x, patch_size=patch, overlap=overlap)
    return prob.argmax(0).numpy().astype(np.uint8)


def print_table(title, rows):
    print(f"\n{title}")
    print(f"  {'class':<20} {'Dice':>7} {'true vox':>9} {'pred vox':>9}")
    for name, r in rows.items():
        d = f"{r['dice']:.3f}" if r["dice"] is not None else "-"
        t = r["voxels_true"] if r["voxels_true"] is not None else "-"
        print(f"  {name:<20} {d:>7} {t!s:>9} {r['voxels_pred']:>9}  {r.get('note', '')}")
    ds = [r["dice"] for r in rows.values() if r["dice"] is not None]
    if ds:
        print(f"  mean over {len(ds)} labelled classes: {np.mean(ds):.3f}")


def render_icrp(src, seed, phase):
    """Whole-volume CT (HU [k,j,i]) from a render source with a fixed seed; canonical geometry."""
    rng = np.random.default_rng(seed)
    table = td.sample_group_hu(rng, phase)
    a = src.arrays
    hu = ((table[a["g1"]] - td.AIR_HU) * a["f1"] + (table[a["g2"]] - td.AIR_HU) * a["f2"]) / 255.0 + td.AIR_HU
    hu = td.blur3d(torch.from_numpy(hu.astype(np.float32)), [0.6, 0.6, 0.6])
    hu = hu + torch.from_numpy(rng.normal(0, 15, hu.shape).astype(np.float32))
    return hu.numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "ctarr-unet.safetensors"))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--labels19", default=str(REPO / "build-data" / "labels19"))
    ap.add_argument("--cache", default=str(REPO / "build-data" / "train" / "cache"))
    ap.add_argument("--icrp", default="AF", help="phantom for the rendered test (AM or AF; 'none' to skip)")
    ap.add_argument("--seed", type=int, default=987654, help="held-out rendering seed")
    ap.add_argument("--phase", default="portal", choices=td.PHASES)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, card = load_model(args.model)
    patch = int(card.get("patch_size", 64))
    data = Path(args.data)
    results = {"model": card["id"], "weights_sha256": card["weights"]["sha256"], "patch": patch,
               "overlap": args.overlap, "cases": {}}

    t0 = time.time()
    src = td.totalseg_example_source(data, args.cache)
    pred = predict(model, src.arrays["hu"], patch, args.overlap)
    rows = dice_table(pred, np.asarray(src.labels), src.labelled)
    results["cases"]["totalseg_example"] = {
        "what": "TotalSegmentator example CT vs its model-made segmentation; this CT is IN the training set",
        "grid": list(src.shape), "seconds": round(time.time() - t0, 1), "classes": rows}
    print_table(f"TotalSegmentator example CT (in training!), {time.time() - t0:.0f} s", rows)

    if args.icrp.lower() != "none":
        t0 = time.time()
        isrc = td.icrp_source(data, args.icrp, args.labels19, args.cache)
        labels = np.asarray(isrc.labels)
        ks = np.nonzero(labels.reshape(labels.shape[0], -1).max(1))[0]
        k0, k1 = max(0, int(ks.min()) - 8), min(labels.shape[0], int(ks.max()) + 9)
        hu = render_icrp(isrc, args.seed, args.phase)[k0:k1]
        pred = predict(model, hu, patch, args.overlap)
        rows = dice_table(pred, labels[k0:k1], isrc.labelled)
        results["cases"][f"icrp110_{args.icrp}"] = {
            "what": f"CT rendered from the ICRP 110 {args.icrp} phantom, held-out seed {args.seed}, phase "
                    f"{args.phase}, canonical geometry; the phantom anatomy is in training",
            "slices_k": [k0, k1], "seconds": round(time.time() - t0, 1), "classes": rows}
        print_table(f"ICRP 110 {args.icrp} rendered (seed {args.seed}, {args.phase}), slices {k0}-{k1}, "
                    f"{time.time() - t0:.0f} s", rows)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
