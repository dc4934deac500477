#!/usr/bin/env python3
"""Benchmark (not a test): N scans cropped by one ctarr.Pipeline (model and atlas loaded once) against N `ctarr crop`
processes, each loading them again. Prints seconds per scan for both and their ratio.

    PYTHONPATH=build/python /usr/bin/python3 scripts/bench_python.py [--build build] [--scans N] [--region liver]
        [SCAN ...]

Default scan: the bundled example CT, N times (each crop is the full pipeline: read, network, fit, crop).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scans", nargs="*", help="scans to crop (default: the example CT)")
    ap.add_argument("--build", default=str(REPO / "build"), help="the CMake build folder (default: build)")
    ap.add_argument("--scans", dest="count", type=int, default=20, help="how many crops (cycling over the scans)")
    ap.add_argument("--region", default="liver")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.build, "python"))
    import ctarr  # noqa: E402

    scans = args.scans or [str(REPO / "examples" / "totalseg_example" / "example_ct.nii.gz")]
    work = [scans[n % len(scans)] for n in range(args.count)]

    t0 = time.perf_counter()
    pipe = ctarr.Pipeline(device=args.device)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    for s in work:
        pipe.crop(s, [args.region])
    python_total = time.perf_counter() - t0
    python_loop = time.perf_counter() - t1

    cli = os.path.join(args.build, "bin", "ctarr")
    with tempfile.TemporaryDirectory() as out:
        t2 = time.perf_counter()
        for n, s in enumerate(work):
            subprocess.run([cli, "-q", "crop", "--device", args.device, "--region", args.region, s,
                            "-o", os.path.join(out, str(n))], check=True)
        cli_total = time.perf_counter() - t2

    n = len(work)
    print(f"{n} crops of {args.region} ({len(scans)} distinct scan(s)), device {args.device}")
    print(f"python, one Pipeline : {python_total / n:6.2f} s per scan ({python_total:.1f} s in all; "
          f"loading {load:.2f} s, then {python_loop / n:.2f} s per scan)")
    print(f"CLI, one process each: {cli_total / n:6.2f} s per scan ({cli_total:.1f} s in all, writing files)")
    print(f"ratio CLI / python   : {cli_total / python_total:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
