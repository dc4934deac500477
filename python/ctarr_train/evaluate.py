"""Whole-volume inference and per-class Dice, as `ctarr segment` computes them (3 mm canonical grid)."""

import numpy as np
import torch

from . import classes as cl
from .sampler import window


@torch.no_grad()
def predict_volume(model, hu, amp_dtype=None):
    """HU [k,j,i] (3 mm canonical) -> argmax labels [k,j,i] uint8, one pass over the whole volume (zero padding
    to the network's divisor at the far end, as the C++ does). The model must be in eval mode."""
    d = model.divisor
    x = window(torch.as_tensor(np.asarray(hu, np.float32)))
    shape = x.shape[1:]
    padded = [((n + d - 1) // d) * d for n in shape]
    xp = torch.zeros((1, x.shape[0], *padded))
    xp[0, :, :shape[0], :shape[1], :shape[2]] = x
    with torch.autocast("cpu", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits = model(xp)
    return logits[0, :, :shape[0], :shape[1], :shape[2]].float().argmax(0).to(torch.uint8).numpy()


def dice_per_class(pred, ref, labelled):
    """{class name: Dice} for the classes labelled in the reference and present in it or in the prediction;
    None where the class is absent from both."""
    out = {}
    for c in range(1, cl.NUM_OUT):
        if not labelled[c]:
            continue
        a, b = pred == c, ref == c
        s = int(a.sum()) + int(b.sum())
        if int(b.sum()) == 0:
            continue  # not in the field of view: nothing to score
        out[cl.CLASSES[c - 1]] = round(2.0 * int((a & b).sum()) / s, 4)
    return out


def evaluate_sources(model, sources, amp_dtype=None):
    """{source name: {class: Dice}} on whole volumes, model in eval mode (restored to its previous mode)."""
    was_training = model.training
    model.eval()
    try:
        results = {}
        for s in sources:
            pred = predict_volume(model, s.arrays["hu"], amp_dtype)
            results[s.name] = dice_per_class(pred, np.asarray(s.labels), s.labelled)
        return results
    finally:
        model.train(was_training)
