"""Resumable training state.

Two forms:
  local      WORKDIR/checkpoint.pt (torch.save, float32, written every few minutes): survives a crash of the run
  committed  training/state/ctarr-unet-train.{safetensors,json} (bf16 weights and AdamW moments, BatchNorm
             statistics in float32, torch RNG; JSON: step, elapsed time, sampler RNG state, arguments, the loss
             curve in blocks of 100 steps and the validation Dice): small enough to commit, one file replaced in
             place, so that a fresh machine resumes from the repository.
Resuming takes whichever of the two has more steps.
"""

import json
import os
from pathlib import Path

import torch

from .unet import load_safetensors, save_safetensors

STEM = "ctarr-unet-train"


def save_local(path, model, opt, state):
    tmp = str(path) + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, tmp)
    os.replace(tmp, path)


def load_local(path):
    return torch.load(path, map_location="cpu")


def save_committed(folder, model, opt, state):
    """Writes STEM.safetensors + STEM.json in folder (temp files, then rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        low = v.is_floating_point() and not (k.endswith("running_mean") or k.endswith("running_var"))
        tensors[f"model/{k}"] = v.to(torch.bfloat16) if low else v
    names = [n for n, _ in model.named_parameters()]
    opt_state = opt.state_dict()
    steps = {}
    for idx, st in opt_state["state"].items():
        name = names[idx]
        tensors[f"adam/exp_avg/{name}"] = st["exp_avg"].to(torch.bfloat16)
        tensors[f"adam/exp_avg_sq/{name}"] = st["exp_avg_sq"].to(torch.bfloat16)
        steps[name] = float(st["step"])
    tensors["rng/torch"] = torch.get_rng_state()
    meta = dict(state, adam_steps=steps, param_groups=[{k: v for k, v in g.items() if k != "params"}
                                                       for g in opt_state["param_groups"]])
    tmp_w, tmp_j = folder / f".{STEM}.tmp.safetensors", folder / f".{STEM}.tmp.json"
    save_safetensors(tensors, tmp_w, metadata={"format": "ctarr-train-state", "step": state["step"]})
    with open(tmp_j, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    os.replace(tmp_w, folder / f"{STEM}.safetensors")
    os.replace(tmp_j, folder / f"{STEM}.json")


def committed_step(folder):
    p = Path(folder) / f"{STEM}.json"
    if not p.exists():
        return -1
    with open(p) as f:
        return int(json.load(f)["step"])


def load_committed(folder, model, opt):
    """Restores model, optimiser and torch RNG from the committed state; returns the state dict."""
    folder = Path(folder)
    tensors, _ = load_safetensors(folder / f"{STEM}.safetensors", keep_dtype=True)
    with open(folder / f"{STEM}.json") as f:
        meta = json.load(f)
    sd = model.state_dict()
    model.load_state_dict({k: tensors[f"model/{k}"].to(sd[k].dtype) for k in sd})
    names = [n for n, _ in model.named_parameters()]
    opt_sd = opt.state_dict()
    opt_sd["state"] = {}
    for idx, name in enumerate(names):
        if f"adam/exp_avg/{name}" in tensors:
            opt_sd["state"][idx] = {"step": torch.tensor(meta["adam_steps"][name]),
                                    "exp_avg": tensors[f"adam/exp_avg/{name}"].float(),
                                    "exp_avg_sq": tensors[f"adam/exp_avg_sq/{name}"].float()}
    for g, saved in zip(opt_sd["param_groups"], meta.get("param_groups", [])):
        g.update(saved)
    opt.load_state_dict(opt_sd)
    torch.set_rng_state(tensors["rng/torch"])
    for k in ("adam_steps", "param_groups"):
        meta.pop(k, None)
    return meta


def state_file(path):
    """A committed state's weights file: the .safetensors itself, or the folder that holds STEM.safetensors."""
    p = Path(path)
    return p / f"{STEM}.safetensors" if p.is_dir() else p


def average_model_weights(model, state_paths):
    """Replaces model's weights by the plain average of its own and those of the committed states at state_paths
    (weight averaging over the end of a run, Izmailov et al. 2018). Only the learnt weights are averaged; BatchNorm's
    running statistics are kept from model and must be recomputed for the averaged weights
    (evaluate.recalibrate_batchnorm). Returns the steps of the states read, in the order given. A state whose
    weights do not match model's names and shapes raises ValueError naming its file."""
    learnt = {n for n, _ in model.named_parameters()}
    sd = model.state_dict()
    sums = {k: sd[k].detach().double().clone() for k in learnt}
    steps = []
    for path in state_paths:
        f = state_file(path)
        tensors, meta = load_safetensors(f, keep_dtype=True)
        for k in learnt:
            t = tensors.get(f"model/{k}")
            if t is None or tuple(t.shape) != tuple(sd[k].shape):
                raise ValueError(f"{f}: not a state of this network (weight {k} "
                                 f"{'missing' if t is None else tuple(t.shape)}, expected {tuple(sd[k].shape)})")
            sums[k] += t.double()
        steps.append(int(meta.get("step", -1)))
    n = len(state_paths) + 1
    model.load_state_dict({k: (sums[k] / n).to(sd[k].dtype) if k in sums else sd[k] for k in sd})
    return steps
