#!/usr/bin/python3
"""Writes a randomly initialised ctarr U-Net (full width 32/64/128/256) as models/ctarr-unet.safetensors plus its
card models/ctarr-unet.json ("id": "ctarr-unet-untrained", "trained": false), so that the pipeline can be
exercised end to end before the trained model exists. Its segmentations are meaningless. Do not commit the
output (22 MB); re-create it with

    /usr/bin/python3 scripts/export_random_model.py [--out models/ctarr-unet.safetensors] [--seed 0] [--time]

--time also reports the duration of one forward pass of 1x3x64^3 on the CPU (torch threads: --threads, default 2).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctarr_unet  # noqa: E402


def main():
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(repo, "models", "ctarr-unet.safetensors"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time", action="store_true", help="time one 1x3x64^3 forward pass")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = ctarr_unet.CtarrUNet().eval()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    card = ctarr_unet.save_model(
        model, args.out, "ctarr-unet-untrained", trained=False,
        training={"note": "randomly initialised (PyTorch default init), seed %d; not trained" % args.seed},
        licence="CC0-1.0", metadata={"seed": args.seed, "trained": "false"})
    n = sum(p.numel() for p in model.parameters())
    print("wrote %s (%d parameters, sha256 %s) and its card" % (args.out, n, card["weights"]["sha256"]))

    if args.time:
        x = torch.rand(1, 3, 64, 64, 64)
        with torch.inference_mode():
            model(x)  # warm-up
            times = []
            for _ in range(3):
                t = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t)
        print("forward 1x3x64^3 on %d threads: best %.3f s, mean %.3f s" % (args.threads, min(times),
                                                                           sum(times) / len(times)))


if __name__ == "__main__":
    main()
