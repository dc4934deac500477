#!/usr/bin/python3
"""Trains ctarr's 19-class 3D U-Net (scripts/ctarr_unet.py) and writes models/<name>.safetensors + its card.

Input: 3 channels, the HU windows [-500, 1300], [-1024, 150], [-150, 250] each scaled to [0, 1]; output: 20
logits (background + the 19 classes of scripts/ctarr_labels.py); 64^3 patches at 3 mm in ctarr's canonical
orientation (LPS-aligned axes, as src/preprocess.cpp feeds the network).

Samples (scripts/train_data.py):
  (a) CTs rendered on the fly from the ICRP 110 AM/AF organ label maps with domain randomisation (per-tissue HU,
      contrast phases, lungs -950..-600, noise, blur, bias field, anisotropic scaling 0.8-1.25, in-plane rotation
      +-45 deg and 90/180/270, z-flip, random fields of view), labels transformed identically;
  (b) the real TotalSegmentator example CT with its labels mapped to 19 classes, oversampled (--p-real), same
      geometric augmentation; with --data-totalseg DIR, every subject of a TotalSegmentator dataset copy too.
Partial labels: each sample carries the set of classes labelled in it; the loss is the marginal Dice + CE:
the probabilities of unlabelled classes are added to background before the loss, so a voxel marked background
in a sample that does not label, say, the heart may be heart or background without penalty.

Optimiser AdamW (peak lr 1.6e-3, weight decay 1e-4), linear warm-up then cosine decay over
max(step / --steps, elapsed / --time-limit-min); batch 4 on a GPU, 2 on a CPU (documented in the card);
bf16 autocast where the hardware has it (AVX512-BF16/AMX CPUs, GPUs), float32 otherwise. Weights are float32.

Commands (from the repo root; /usr/bin/python3 is the Python with torch):
  smoke test, < 60 s, writes a model to a temp dir:
      /usr/bin/python3 scripts/train.py --smoke --out /tmp/ctarr-smoke
  the shipped model (2-core CPU, 60 min, checkpoints every 5 min to build-data/train/):
      nice -n 10 /usr/bin/python3 scripts/train.py --time-limit-min 60 --out build-data/train/model
      /usr/bin/python3 scripts/train.py --export-only --out models        # latest checkpoint -> models/
  on a GPU, longer:
      /usr/bin/python3 scripts/train.py --device cuda --time-limit-min 600 --steps 100000 --loader-workers 12
  on a TotalSegmentator dataset copy (s0000/ct.nii.gz + s0000/segmentations/*.nii.gz):
      /usr/bin/python3 scripts/train.py --device cuda --data-totalseg /data/Totalsegmentator_dataset_v201 \\
          --workers 12 --loader-workers 12 --p-real 0.8 --time-limit-min 1440 --steps 250000
See docs/TRAINING.md.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# On a shared CPU (compilers running beside training), OpenMP threads that sleep instead of spinning waste less.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ctarr_unet as cu  # noqa: E402
import train_data as td  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL_STEM = "ctarr-unet"


# ---- loss ---------------------------------------------------------------------------------------------------------

def partial_label_loss(logits, target, labelled, eps=1e-5):
    """Marginal CE + soft Dice for partially labelled samples.

    logits [N, C, D, H, W], target [N, D, H, W] (0 = background; never an unlabelled class), labelled [N, C] bool
    (column 0 true). The probability of every class not labelled in sample n is merged into background for that
    sample (the "marginal" loss of Shi et al. 2021 / Fang & Yan 2020): CE is -log q[target] with
    q_bg = p_bg + sum(p_unlabelled); Dice is computed per class over the samples that label it, over the classes
    present in the batch's targets (batch Dice), and averaged. Returns (loss, ce, dice_loss)."""
    logits = logits.float()
    n, c = logits.shape[:2]
    lab = labelled.to(logits.device)
    bg_group = ~lab
    bg_group[:, 0] = True
    view = (n, c) + (1,) * (logits.dim() - 2)
    lse_all = torch.logsumexp(logits, dim=1, keepdim=True)
    neg = torch.finfo(logits.dtype).min
    lse_bg = torch.logsumexp(logits.masked_fill(~bg_group.view(view), neg), dim=1, keepdim=True)
    logq = logits - lse_all
    logq = torch.cat([lse_bg - lse_all, logq[:, 1:]], dim=1)
    ce = torch.nn.functional.nll_loss(logq, target)

    p = torch.softmax(logits, dim=1)
    unl = (~lab).float().view(view)
    unl[:, 0] = 0
    q = p * (1 - unl)
    q = torch.cat([q[:, :1] + (p * unl).sum(1, keepdim=True), q[:, 1:]], dim=1)
    onehot = torch.nn.functional.one_hot(target, c).movedim(-1, 1).float()
    dims = tuple(range(2, logits.dim()))
    inter = (q * onehot).sum(dims)           # [N, C]
    psum = q.sum(dims)
    gsum = onehot.sum(dims)
    w = lab.float()                           # a class counts only in the samples that label it
    inter, psum, gsum = (inter * w).sum(0), (psum * w).sum(0), (gsum * w).sum(0)
    present = gsum[1:] > 0
    if present.any():
        dice = (2 * inter[1:] + eps) / (psum[1:] + gsum[1:] + eps)
        dice_loss = 1 - dice[present].mean()
    else:
        dice_loss = logits.sum() * 0
    return ce + dice_loss, ce.detach(), dice_loss.detach()


# ---- schedule -----------------------------------------------------------------------------------------------------

def learning_rate(step, progress, peak, warmup):
    warm = min(1.0, (step + 1) / max(1, warmup))
    return peak * warm * max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


# ---- hardware -----------------------------------------------------------------------------------------------------

def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_has_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def hardware_text(device, threads):
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    return f"{os.cpu_count()}-core CPU ({cpu_name()}), {threads} torch threads, no GPU"


# ---- data loading -------------------------------------------------------------------------------------------------

class SampleStream(torch.utils.data.IterableDataset):
    def __init__(self, sampler, seed):
        super().__init__()
        self.sampler, self.seed = sampler, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, wid, int(time.time() * 1000) % 100000])
        torch.manual_seed(int(rng.integers(2**31)))
        while True:
            x, y, lab, name, _ = self.sampler.sample(rng)
            yield x, y, lab, name


def batches(sampler, batch, seed, workers, threads):
    """Endless (x [B,3,P,P,P], y [B,P,P,P], labelled [B,20], names)."""
    if workers > 0:
        loader = torch.utils.data.DataLoader(SampleStream(sampler, seed), batch_size=batch, num_workers=workers,
                                             persistent_workers=True, prefetch_factor=4)
        for x, y, lab, names in loader:
            yield x, y, lab, list(names)
    else:
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        while True:
            torch.set_num_threads(1)  # element-wise work: one thread is several times faster on a busy 2-core box
            items = [sampler.sample(rng) for _ in range(batch)]
            torch.set_num_threads(threads)
            yield (torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items]),
                   torch.stack([i[2] for i in items]), [i[3] for i in items])


# ---- records and export -------------------------------------------------------------------------------------------

def curve_summary(history, parts=10):
    """Mean loss / CE / Dice-loss over `parts` equal step ranges of the history."""
    if not history:
        return []
    h = np.array([[r["step"], r["loss"], r["ce"], r["dice_loss"]] for r in history], float)
    out = []
    for chunk in np.array_split(h, min(parts, len(h))):
        out.append({"steps": [int(chunk[0, 0]), int(chunk[-1, 0])], "loss": round(float(chunk[:, 1].mean()), 4),
                    "ce": round(float(chunk[:, 2].mean()), 4), "dice_loss": round(float(chunk[:, 3].mean()), 4)})
    return out


def training_record(state, args, sources, sampler, device, threads, amp_dtype):
    hist = state["history"]
    batch = args.batch
    data = []
    for s in sources:
        data.append(dict(name=s.name, kind=s.kind, **s.provenance,
                         labelled_classes=[cu.CLASSES[c - 1] for c in range(1, td.NUM_OUT) if s.labelled[c]]))
    seen = {}
    for r in hist:
        for n in r.get("sources", []):
            seen[n] = seen.get(n, 0) + 1
    return {
        "steps": state["step"],
        "samples": state["step"] * batch,
        "batch": batch,
        "patch": args.patch,
        "time_s": round(state["elapsed"], 1),
        "time_limit_min": args.time_limit_min,
        "hardware": hardware_text(device, threads),
        "precision": f"autocast {amp_dtype}" if amp_dtype else "float32",
        "torch": torch.__version__,
        "date": datetime.datetime.now().strftime("%Y-%m-%d"),
        "command": " ".join(state.get("argv", sys.argv)),
        "optimizer": {"name": "AdamW", "peak_lr": args.lr, "weight_decay": args.weight_decay,
                      "warmup_steps": args.warmup, "schedule": "linear warm-up, cosine decay to 0 over "
                      "max(step / steps, elapsed / time limit)", "grad_clip_norm": 12.0},
        "data": data,
        "sampling": {"p_real_ct": sampler.p_real, "patches_per_source": seen},
        "augmentations": sampler.aug.describe(),
        "losses": {"definition": "marginal (partial-label) cross-entropy + soft Dice over labelled classes "
                                 "(probabilities of classes unlabelled in a sample merged into background)",
                   "curve": curve_summary(hist),
                   "final_100_steps": curve_summary(hist[-100:], 1)},
        "seed": args.seed,
        "note": args.note,
        "generated_by": "scripts/train.py",
    }


def evaluation_summary(path):
    """Per-class Dice from scripts/evaluate.py's --json output, for the card."""
    with open(path) as f:
        ev = json.load(f)
    out = {"generated_by": "scripts/evaluate.py", "inference": f"sliding window {ev['patch']}^3, overlap "
           f"{ev['overlap']}, Gaussian weights, float32 (as src/network.cpp)", "cases": {}}
    for name, case in ev["cases"].items():
        dice = {c: r["dice"] for c, r in case["classes"].items() if r["dice"] is not None}
        out["cases"][name] = {"what": case["what"], "dice": dice,
                              "mean_dice": round(float(np.mean(list(dice.values()))), 4) if dice else None}
    return out


def export(model, out_dir, record, model_id, smoke=False, evaluation=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{MODEL_STEM}.safetensors"
    tmp = out_dir / f".{MODEL_STEM}.tmp.safetensors"
    model_cpu = cu.CtarrUNet(filters=cu.FILTERS)
    model_cpu.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    card = cu.save_model(model_cpu, str(tmp), model_id, trained=True, training=record,
                         licence="CC-BY-4.0", patch_size=record.get("patch", cu.PATCH_SIZE),
                         metadata={"format": "pt", "model": model_id})
    card["weights"]["file"] = path.name
    card["licence_note"] = ("weights: CC BY 4.0. Trained on ICRP Publication 110 phantoms (ICRP; research use, "
                            "distributed with Geant4) and TotalSegmentator data (CC BY 4.0, Wasserthal et al. 2023)")
    if evaluation:
        card["evaluation"] = evaluation
    if smoke:
        card["smoke"] = "a few steps of scripts/train.py --smoke: tests the pipeline, segmentations are meaningless"
    os.replace(tmp, path)
    with open(out_dir / f"{MODEL_STEM}.json", "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    tmp_card = out_dir / f".{MODEL_STEM}.tmp.json"
    if tmp_card.exists():
        tmp_card.unlink()
    return path


def save_checkpoint(path, model, opt, state):
    tmp = str(path) + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, tmp)
    os.replace(tmp, path)


# ---- main ---------------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="where the final model goes (ctarr-unet.safetensors + .json); "
                                                "default build-data/train/model, --smoke: a temp dir")
    ap.add_argument("--workdir", default=str(REPO / "build-data" / "train"),
                    help="checkpoints, log.jsonl, latest/ model (default build-data/train)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="shared data (../shared/data)")
    ap.add_argument("--labels19", default=str(REPO / "build-data" / "labels19"),
                    help="19-class ICRP maps from scripts/prepare_label_maps.py (made if missing)")
    ap.add_argument("--cache", default=str(REPO / "build-data" / "train" / "cache"), help="3 mm source cache")
    ap.add_argument("--data-totalseg", default=None, help="TotalSegmentator dataset copy: DIR/s0000/ct.nii.gz + "
                                                          "DIR/s0000/segmentations/*.nii.gz")
    ap.add_argument("--totalseg-limit", type=int, default=None, help="use the first N subjects only")
    ap.add_argument("--workers", type=int, default=1, help="processes preparing TotalSegmentator subjects")
    ap.add_argument("--no-example", action="store_true", help="leave out the TotalSegmentator example CT")
    ap.add_argument("--p-real", type=float, default=0.5, help="probability that a patch comes from a real CT")
    ap.add_argument("--steps", type=int, default=100000, help="maximum steps (the schedule ends at the earlier "
                                                              "of --steps and --time-limit-min)")
    ap.add_argument("--time-limit-min", type=float, default=60.0, help="training wall time, minutes")
    ap.add_argument("--batch", type=int, default=None, help="default 4 on a GPU, 2 on a CPU")
    ap.add_argument("--patch", type=int, default=cu.PATCH_SIZE)
    ap.add_argument("--lr", type=float, default=1.6e-3)
    ap.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the network (CPU)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                    help="bf16 autocast: auto = on GPUs and on CPUs with AVX512-BF16/AMX")
    ap.add_argument("--loader-workers", type=int, default=0, help="data-loader processes (0: in the main process)")
    ap.add_argument("--checkpoint-min", type=float, default=5.0, help="minutes between checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue from WORKDIR/checkpoint.pt")
    ap.add_argument("--export-only", action="store_true", help="write WORKDIR/checkpoint.pt's model to --out")
    ap.add_argument("--model-id", default=None)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-json", default=None, help="with --export-only: put scripts/evaluate.py --json results "
                                                      "(per-class Dice) into the card")
    ap.add_argument("--note", default="", help="free text for the card's training record (e.g. machine load)")
    ap.add_argument("--smoke", action="store_true",
                    help="a few steps on the synthetic phantom (+ the TotalSegmentator example when ../shared/data "
                         "is there + a tiny synthetic TotalSegmentator-format folder), 32^3 patches, < 60 s")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.batch is None:
        args.batch = 4 if device.type == "cuda" else 2
    if args.amp == "bf16" or (args.amp == "auto" and (device.type == "cuda" or cpu_has_bf16())):
        amp_dtype = torch.bfloat16
    else:
        amp_dtype = None
    smoke_tmp = None
    if args.smoke:
        args.steps, args.batch, args.patch, args.warmup = 3, 1, 32, 1
        args.checkpoint_min = 1e9
        if args.out is None:
            smoke_tmp = tempfile.mkdtemp(prefix="ctarr-train-smoke-")
            args.out = smoke_tmp
        args.workdir = str(Path(args.out) / "work")
        args.cache = str(Path(args.out) / "cache")
        args.data_totalseg = td.write_synthetic_totalseg(Path(args.out) / "synthetic_totalseg")
        args.totalseg_limit = None
    if args.out is None:
        args.out = str(Path(args.workdir) / "model")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = workdir / "checkpoint.pt"
    model_id = args.model_id or (f"{MODEL_STEM}-smoke" if args.smoke else
                                 f"{MODEL_STEM}-{datetime.datetime.now().strftime('%Y-%m-%d')}")

    def log(msg):
        print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True)

    sources, notes = td.load_sources(args, log=log)
    for s in sources[:20]:
        log(f"source {s.name}: {s.kind}, 3 mm grid {tuple(s.shape)} (k, j, i), classes present "
            f"{s.present_classes()}, labelled {[c for c in range(1, td.NUM_OUT) if s.labelled[c]]}")
    if len(sources) > 20:
        log(f"... {len(sources)} sources in all")
    sampler = td.PatchSampler(sources, args.patch, p_real=args.p_real)

    model = cu.CtarrUNet().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    state = {"step": 0, "elapsed": 0.0, "history": [], "argv": sys.argv}
    if args.resume or args.export_only:
        if not ckpt_path.exists():
            raise SystemExit(f"error: {ckpt_path} not found")
        ck = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        log(f"resumed {ckpt_path}: step {state['step']}, {state['elapsed'] / 60:.1f} min trained")
    if args.export_only:
        record = training_record(state, args, sources, sampler, device, args.threads, amp_dtype)
        evaluation = evaluation_summary(args.eval_json) if args.eval_json else None
        path = export(model, args.out, record, model_id, evaluation=evaluation)
        log(f"exported step {state['step']} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0

    log(f"device {device}, {hardware_text(device, args.threads)}, precision "
        f"{'bf16 autocast' if amp_dtype else 'float32'}, batch {args.batch}, patch {args.patch}, p_real "
        f"{sampler.p_real}, time limit {args.time_limit_min} min, max steps {args.steps}")
    limit_s = args.time_limit_min * 60.0
    stream = batches(sampler, args.batch, args.seed + state["step"], args.loader_workers, args.threads)
    last_ckpt = time.time()
    log_f = open(workdir / "log.jsonl", "a")
    model.train()
    t_seg = time.time()
    while True:
        progress = max(state["step"] / args.steps, state["elapsed"] / limit_s)
        if progress >= 1.0:
            break
        t0 = time.time()
        x, y, labelled, names = next(stream)
        t_data = time.time() - t0
        lr = learning_rate(state["step"], progress, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x)
        loss, ce, dl = partial_label_loss(logits, y, labelled)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
        opt.step()
        now = time.time()
        state["elapsed"] += now - t_seg
        t_seg = now
        state["step"] += 1
        rec = {"step": state["step"], "elapsed_s": round(state["elapsed"], 1), "lr": lr, "loss": float(loss),
               "ce": float(ce), "dice_loss": float(dl), "data_s": round(t_data, 3),
               "step_s": round(now - t0, 3), "sources": names}
        state["history"].append(rec)
        log_f.write(json.dumps(rec) + "\n")
        if not math.isfinite(rec["loss"]):
            raise SystemExit(f"error: loss is {rec['loss']} at step {state['step']}")
        if state["step"] % args.log_every == 0 or args.smoke:
            recent = state["history"][-args.log_every:]
            log_f.flush()
            log(f"step {state['step']:6d}  loss {np.mean([r['loss'] for r in recent]):.4f}  ce "
                f"{np.mean([r['ce'] for r in recent]):.4f}  dice {np.mean([r['dice_loss'] for r in recent]):.4f}  "
                f"lr {lr:.2e}  {np.mean([r['step_s'] for r in recent]):.2f} s/step (data "
                f"{np.mean([r['data_s'] for r in recent]):.2f})  {state['elapsed'] / 60:.1f} min")
        if time.time() - last_ckpt > args.checkpoint_min * 60:
            save_checkpoint(ckpt_path, model, opt, state)
            record = training_record(state, args, sources, sampler, device, args.threads, amp_dtype)
            export(model, workdir / "latest", record, model_id, smoke=args.smoke)
            log(f"checkpoint: step {state['step']} -> {ckpt_path}, {workdir / 'latest'}")
            last_ckpt = time.time()
            t_seg = time.time()  # checkpoint time is not training time
    log_f.close()
    if not args.smoke:
        save_checkpoint(ckpt_path, model, opt, state)
    record = training_record(state, args, sources, sampler, device, args.threads, amp_dtype)
    path = export(model, args.out, record, model_id, smoke=args.smoke)
    log(f"done: {state['step']} steps, {state['elapsed'] / 60:.1f} min training, model {path} "
        f"({path.stat().st_size / 1e6:.1f} MB) + {path.with_suffix('.json').name}")
    if args.smoke:
        shutil.rmtree(Path(args.out) / "cache", ignore_errors=True)
        shutil.rmtree(Path(args.out) / "synthetic_totalseg", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
