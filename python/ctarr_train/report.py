"""Markdown tables of a training run from its committed state (training/state/ctarr-unet-train.json):

    PYTHONPATH=python /usr/bin/python3 -m ctarr_train.report [--state training/state] [--write docs/TRAINING.md]

--write replaces the text between <!-- training:begin --> and <!-- training:end --> in that file.
"""

import argparse
import json
import re
from pathlib import Path

from .classes import REPO

SHOW = ("liver", "spleen", "kidney_left", "kidney_right", "lung_left", "lung_right", "heart", "brain", "skull",
        "vertebrae_cervical", "vertebrae_thoracic", "vertebrae_lumbar", "ribs_left", "ribs_right", "sacrum",
        "hip_left", "hip_right", "urinary_bladder")


def tables(state, rows=12):
    curve = state.get("curve", [])
    out = []
    runs = state.get("runs", [])
    out.append(f"Steps {state['step']} (batch 2), {state['elapsed'] / 3600:.2f} h of training in {len(runs)} run(s).\n")
    out.append("Loss (mean over blocks of 100 steps; loss = marginal CE + soft Dice loss):\n")
    out.append("| steps | hours | loss | CE | Dice loss | s/step |")
    out.append("|---|---|---|---|---|---|")
    pick = curve if len(curve) <= rows else [curve[round(i * (len(curve) - 1) / (rows - 1))] for i in range(rows)]
    for c in pick:
        out.append(f"| {c['steps'][0]}-{c['steps'][1]} | {c['elapsed_min'] / 60:.2f} | {c['loss']:.3f} | "
                   f"{c['ce']:.3f} | {c['dice_loss']:.3f} | {c['step_s']:.2f} |")
    evals = state.get("evals", [])
    if evals:
        for kind, title in (("validation", "Validation CTs (never trained on)"),
                            ("training_ct", "Training CTs (fitting, not generalisation)")):
            names = sorted(evals[-1][kind])
            for name in names:
                classes = [c for c in SHOW if c in evals[-1][kind][name]]
                if not classes:
                    continue
                out.append(f"\n{title}: **{name}**, whole-volume Dice (BatchNorm in eval mode, as `ctarr segment` runs "
                           f"it) by step:\n")
                out.append("| step | " + " | ".join(classes) + " |")
                out.append("|---" * (len(classes) + 1) + "|")
                sel = evals if len(evals) <= rows else [evals[round(i * (len(evals) - 1) / (rows - 1))]
                                                        for i in range(rows)]
                for e in sel:
                    d = e[kind].get(name, {})
                    out.append(f"| {e['step']} | " + " | ".join(f"{d[c]:.2f}" if c in d else "-" for c in classes)
                               + " |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", default=str(REPO / "training" / "state"))
    ap.add_argument("--write", default=None)
    args = ap.parse_args(argv)
    with open(Path(args.state) / "ctarr-unet-train.json") as f:
        state = json.load(f)
    text = tables(state)
    if args.write:
        doc = Path(args.write).read_text()
        new, n = re.subn(r"(<!-- training:begin -->\n).*?(<!-- training:end -->)", lambda m: m.group(1) + text + m.group(2),
                         doc, flags=re.S)
        if n != 1:
            raise SystemExit(f"error: {args.write} has no <!-- training:begin --> ... <!-- training:end --> block")
        Path(args.write).write_text(new)
    else:
        print(text)


if __name__ == "__main__":
    main()
