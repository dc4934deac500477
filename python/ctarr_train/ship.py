"""Ships a trained model into models/: its weights, and its card with the measurements that justify it.

    PYTHONPATH=python /usr/bin/python3 -m ctarr_train.ship MODEL_DIR --segment-eval SEG.json --crop-check CROP.json [--to models]

MODEL_DIR holds ctarr-unet.safetensors + ctarr-unet.json as python/ctarr_train exports them (the card already names
the training data, their licences, the runs and their commands). SEG.json is the output of
`python3 -m ctarr_train.segment_eval --model MODEL_DIR/ctarr-unet.safetensors --json SEG.json` (per-class Dice of
`ctarr segment` on the validation and training CTs), CROP.json that of `python3 -m ctarr_train.crop_check --model ...
--json CROP.json` (`ctarr crop` without --seg on every real CT: exit code, orientation, kept fractions). Both go into
the card's "evaluation", with the validation split named; the weights' sha256 is checked against the card first.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .classes import REPO
from .unet import sha256_file

NAME = "ctarr-unet"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--segment-eval", required=True)
    ap.add_argument("--crop-check", required=True)
    ap.add_argument("--to", default=str(REPO / "models"))
    args = ap.parse_args(argv)
    src, dst = Path(args.model_dir), Path(args.to)
    weights, card_path = src / f"{NAME}.safetensors", src / f"{NAME}.json"
    for p in (weights, card_path, Path(args.segment_eval), Path(args.crop_check)):
        if not p.exists():
            sys.exit(f"error: {p} not found")
    card = json.loads(card_path.read_text())
    if card.get("weights", {}).get("sha256") != sha256_file(weights):
        sys.exit(f"error: {weights} does not match the sha256 in {card_path}")
    seg = json.loads(Path(args.segment_eval).read_text())
    crop = json.loads(Path(args.crop_check).read_text())
    card["evaluation"] = {
        "validation_split": "real CTs never trained on: TotalSegmentator subjects s0009 (abdomen-pelvis) and s0002 "
                            "(head-neck-chest), the thoracic CTA (heart); unlabelled: the InVesalius head CT and the "
                            "gantry-tilt head DICOM series. Trained on: the TotalSegmentator example CT and s0003.",
        "segmentation": {"command": seg.get("command"), "fields": seg.get("fields"), "cases": seg.get("cases")},
        "crop_without_seg": {"command": crop.get("command"), "rows": crop.get("rows"),
                             "exited_0": f"{sum(r.get('exit') == 0 for r in crop.get('rows', []))} of "
                                         f"{len(crop.get('rows', []))}"},
    }
    dst.mkdir(parents=True, exist_ok=True)
    # weights first, card last, each through a temporary file: a reader never sees a card without its weights
    for data_from, name in ((weights, f"{NAME}.safetensors"), (None, f"{NAME}.json")):
        fd, tmp = tempfile.mkstemp(dir=dst, prefix=f".{name}.")
        os.close(fd)
        if data_from is not None:
            shutil.copyfile(data_from, tmp)
        else:
            Path(tmp).write_text(json.dumps(card, indent=1) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, dst / name)
    print(f"shipped {card['id']} (step {card.get('training', {}).get('steps')}) -> {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
