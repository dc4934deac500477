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
    with torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
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


@torch.no_grad()
def recalibrate_batchnorm(model, sampler, batches=40, batch=2, seed=12345, amp_dtype=None):
    """Replaces every BatchNorm's running statistics by their plain average over `batches` fresh batches of training
    patches (drawn from default_rng([seed, n]), the same every time), computed with the current weights.

    The running statistics that training keeps are an exponential average (momentum 0.05) over batches seen with
    older weights; at a learning rate of 1e-3 they lag the weights, and the eval-mode network, which is what is
    exported and what the C++ runs, suffered from it (step 2191: liver Dice on the held-out s0009 0.38 with the
    running statistics, 0.93 after this). Training itself uses batch statistics and is not affected. The model's
    mode and momenta are restored."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    if not bns:
        return
    was_training = model.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    torch_rng = torch.get_rng_state()  # the patches' noise is seeded here; training's own stream is put back
    try:
        for n in range(batches):
            rng = np.random.default_rng([seed, n])
            torch.manual_seed(int(rng.integers(2 ** 31)))
            x = torch.stack([sampler.sample(rng)[0] for _ in range(batch)])
            with torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                model(x)
    finally:
        torch.set_rng_state(torch_rng)
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
