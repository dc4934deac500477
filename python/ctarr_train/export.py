"""The model as the C++ reads it: <stem>.safetensors (float32, BatchNorm folded into the convolutions) and the card
<stem>.json (src/network.cpp: read_model_card)."""

import json
import os
from pathlib import Path

import torch

from . import classes as cl
from .unet import CtarrUNet, architecture, fold_batchnorm, save_safetensors, sha256_file

MODEL_STEM = "ctarr-unet"
LICENCE_NOTE = ("weights: CC BY 4.0. Trained on TotalSegmentator data (CC BY 4.0, Wasserthal J. et al., "
                "TotalSegmentator: robust segmentation of 104 anatomical structures in CT images, Radiology: AI 2023; "
                "dataset doi:10.5281/zenodo.6802613) and on CTs rendered from the ICRP Publication 110 adult reference "
                "phantoms (ICRP; research use, distributed with Geant4)")


def card(model_id, weights_file, sha256, model, patch_size, trained=True, training=None, evaluation=None):
    c = {
        "id": model_id,
        "trained": trained,
        "classes": list(cl.CLASSES),
        "spacing_mm": cl.SPACING_MM,
        "windows_hu": cl.WINDOWS_HU,
        "patch_size": patch_size,
        "filters": list(model.filters),
        "architecture": architecture(model, model.norm),
        "weights": {"file": weights_file, "sha256": sha256, "dtype": "F32"},
        "licence": "CC-BY-4.0",
        "licence_note": LICENCE_NOTE,
        "training": training or {},
    }
    if evaluation:
        c["evaluation"] = evaluation
    return c


def export_model(model, out_dir, model_id, patch_size, training=None, evaluation=None, trained=True):
    """Writes out_dir/ctarr-unet.{safetensors,json} (temp files, then rename). A norm "batch" model is folded first.
    Returns the card."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = model
    if isinstance(m, CtarrUNet) and m.norm == "batch":
        m = fold_batchnorm(m)
    m = m.float().cpu()
    final = out_dir / f"{MODEL_STEM}.safetensors"
    tmp = out_dir / f".{MODEL_STEM}.tmp.safetensors"
    save_safetensors({k: v.float() for k, v in m.state_dict().items()}, tmp,
                     metadata={"format": "pt", "model": model_id})
    c = card(model_id, final.name, sha256_file(tmp), m, patch_size, trained, training, evaluation)
    tmp_card = out_dir / f".{MODEL_STEM}.tmp.json"
    with open(tmp_card, "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    os.replace(tmp, final)
    os.replace(tmp_card, out_dir / f"{MODEL_STEM}.json")
    return c


def load_exported(path):
    """A model written by export_model (norm "none" or "instance") -> CtarrUNet in eval mode, and its card."""
    from .unet import load_safetensors
    path = Path(path)
    with open(path.with_suffix(".json")) as f:
        c = json.load(f)
    arch = c.get("architecture")
    norm = arch["normalisation"] if isinstance(arch, dict) else "instance"
    m = CtarrUNet(c["filters"], norm)
    tensors, _ = load_safetensors(path)
    m.load_state_dict(tensors)
    return m.eval(), c
