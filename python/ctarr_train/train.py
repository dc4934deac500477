"""The training loop: `PYTHONPATH=python /usr/bin/python3 -m ctarr_train [options]` from the repository root.

Every run resumes from the newer of WORKDIR/checkpoint.pt and the committed state (training/state/), trains until
--steps or --time-limit-min, evaluates the validation CTs every --eval-every steps (whole volume, BatchNorm in
eval mode, as the C++ runs it), writes the committed state every --commit-state-min minutes and exports the model
(BatchNorm folded) to WORKDIR/latest/ and, at the end, to --out.

The batch of step s is drawn from numpy's default_rng([seed, s]), so the sampler position is the step count and
a resumed run draws what an unbroken run would have drawn.
"""

import argparse
import datetime
import json
import math
import os
import platform
import signal
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

from . import checkpoint, classes as cl, evaluate, export, sources as src_mod  # noqa: E402
from .augment import AugmentConfig  # noqa: E402
from .loss import partial_label_loss  # noqa: E402
from .sampler import DEFAULT_GROUP_WEIGHTS, PatchSampler  # noqa: E402
from .unet import CtarrUNet, DEFAULT_FILTERS  # noqa: E402

REPO = cl.REPO
TRAIN_REAL = ("s0003",)
VALIDATION = ("s0009", "s0002", "thorax_cta")
LABELMAPS = ("s0000", "s0001", "s0004", "s0006", "s0011", "s0327", "s0328")
BLOCK = 100  # steps per row of the committed loss curve


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


def learning_rate(step, total, peak, warmup, floor=0.01):
    """Linear warm-up, then cosine from peak to floor * peak at `total` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def build_sources(args, log):
    """(training sources, validation sources) from ../shared/data (or the synthetic phantom for --smoke)."""
    cache = Path(args.cache)
    if args.smoke:
        s = src_mod.synthetic_source()
        ct = src_mod.Source("synthetic_ct", "ct", {"hu": src_mod.render_full(s, np.random.default_rng(0))},
                            s.labels, s.labelled, s.provenance, group="real")
        return [s, ct], [ct]
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"error: shared data folder {data} not found (training needs it; --smoke runs without it)")
    subjects = data / "totalseg_subjects"
    train, val = [], []
    for sex in ("AM", "AF"):
        train.append(src_mod.icrp_source(data, sex, args.labels19, cache))
    train.append(src_mod.totalseg_example_source(data, cache))
    for s in args.train_ct:
        train.append(src_mod.totalseg_ct_source(subjects / s, cache))
    for s in args.labelmaps:
        t0 = time.time()
        train.append(src_mod.labelmap_render_source(subjects / s, cache))
        log(f"label map {s}: ready in {time.time() - t0:.0f} s")
    for s in args.validation:
        if s == "thorax_cta":
            val.append(src_mod.thorax_cta_source(data, cache))
        else:
            val.append(src_mod.totalseg_ct_source(subjects / s, cache))
    return train, val


class BatchStream(torch.utils.data.IterableDataset):
    """Batches for steps start, start + 1, ...: step s from default_rng([seed, s])."""

    def __init__(self, sampler, batch, seed, start):
        super().__init__()
        self.sampler, self.batch, self.seed, self.start = sampler, batch, seed, start

    def make(self, step):
        rng = np.random.default_rng([self.seed, step])
        torch.manual_seed(int(rng.integers(2 ** 31)))
        items = [self.sampler.sample(rng, step=step) for _ in range(self.batch)]
        return (torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items]),
                torch.stack([i[2] for i in items]), [i[3] for i in items])

    def __iter__(self):
        torch.set_num_threads(1)
        step = self.start
        while True:
            yield self.make(step)
            step += 1


def batches(stream, workers):
    if workers > 0:
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=2,
                                             persistent_workers=True)
        yield from loader
    else:
        step = stream.start
        while True:
            yield stream.make(step)
            step += 1


def add_to_curve(state, rec):
    blk = state.setdefault("block", {"n": 0, "loss": 0.0, "ce": 0.0, "dice_loss": 0.0, "step_s": 0.0,
                                     "first": rec["step"]})
    blk["n"] += 1
    for k in ("loss", "ce", "dice_loss", "step_s"):
        blk[k] += rec[k]
    if blk["n"] == BLOCK:
        state["curve"].append({"steps": [blk["first"], rec["step"]], "elapsed_min": round(state["elapsed"] / 60, 1),
                               **{k: round(blk[k] / blk["n"], 4) for k in ("loss", "ce", "dice_loss", "step_s")}})
        del state["block"]


def training_record(state, args, train_sources, val_sources, sampler, device, amp_dtype):
    return {
        "steps": state["step"],
        "batch": args.batch,
        "patch": args.patch,
        "samples": state["step"] * args.batch,
        "hours": round(state["elapsed"] / 3600, 2),
        "runs": state.get("runs", []),
        "hardware": hardware_text(device, args.threads),
        "precision": f"autocast {amp_dtype}" if amp_dtype else "float32",
        "torch": torch.__version__,
        "optimizer": {"name": "AdamW", "peak_lr": args.lr, "weight_decay": args.weight_decay,
                      "warmup_steps": args.warmup, "planned_steps": args.steps,
                      "schedule": "linear warm-up, cosine to 1 % of the peak at the planned steps",
                      "grad_clip_norm": 12.0},
        "data": [s.describe() for s in train_sources],
        "validation": [s.describe() for s in val_sources],
        "sampling": sampler.describe(),
        "augmentations": sampler.aug.describe(),
        "loss": "marginal (partial-label) cross-entropy + soft Dice over the classes each sample labels",
        "curve": state["curve"],
        "validation_dice": state["evals"],
        "seed": args.seed,
        "generated_by": "python/ctarr_train (PYTHONPATH=python /usr/bin/python3 -m ctarr_train)",
    }


def _group_weight(text):
    """'real=0.6' -> ('real', 0.6): argparse turns a bad one into a usage error, not a traceback."""
    group, sep, value = text.partition("=")
    try:
        weight = float(value)
    except ValueError:
        weight = float("nan")
    if not sep or group not in DEFAULT_GROUP_WEIGHTS or not math.isfinite(weight) or weight < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected GROUP=W with GROUP one of "
                                         f"{', '.join(DEFAULT_GROUP_WEIGHTS)} and W >= 0")
    return group, weight


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m ctarr_train", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="final model folder (default WORKDIR/model)")
    ap.add_argument("--workdir", default=str(REPO / "build-data" / "train2"), help="local checkpoint, log, cache")
    ap.add_argument("--state", default=str(REPO / "training" / "state"), help="committed state folder")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--labels19", default=str(REPO / "build-data" / "labels19"))
    ap.add_argument("--cache", default=None, help="3 mm source cache (default WORKDIR/cache)")
    ap.add_argument("--train-ct", nargs="*", default=list(TRAIN_REAL), help="TotalSegmentator subjects with CT to train on")
    ap.add_argument("--validation", nargs="*", default=list(VALIDATION), help="held-out CTs (subjects, thorax_cta)")
    ap.add_argument("--labelmaps", nargs="*", default=list(LABELMAPS), help="label-only subjects to render")
    ap.add_argument("--group-weight", type=_group_weight, nargs="*", default=None, metavar="GROUP=W",
                    help="sampling weight of a source group (real, labelmap, icrp, synthetic); "
                         "defaults sampler.DEFAULT_GROUP_WEIGHTS")
    ap.add_argument("--turns-from-step", type=int, default=None,
                    help="curriculum: no 90/180/270-degree turns or z flips before this step")
    ap.add_argument("--real-phase-p", type=float, default=0.0,
                    help="probability that a patch of a native real CT is shown in another contrast phase "
                         "(the shipped step-22945 model: 0)")
    ap.add_argument("--schedule-from", type=int, default=0,
                    help="a warm restart: the warm-up and cosine run from this step to --steps (default 0)")
    ap.add_argument("--filters", type=int, nargs="+", default=list(DEFAULT_FILTERS))
    ap.add_argument("--steps", type=int, default=30000, help="planned total steps (the schedule's length)")
    ap.add_argument("--time-limit-min", type=float, default=60.0, help="this run's wall time, minutes")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loader-workers", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--bn-batches", type=int, default=40,
                    help="batches over which BatchNorm statistics are recomputed before every evaluation and export")
    ap.add_argument("--checkpoint-min", type=float, default=10.0, help="minutes between local checkpoints")
    ap.add_argument("--commit-state-min", type=float, default=30.0, help="minutes between committed-state writes")
    ap.add_argument("--fresh", action="store_true", help="ignore saved states and start at step 0")
    ap.add_argument("--export-only", action="store_true", help="export the saved state's model to --out and stop")
    ap.add_argument("--average-with", nargs="+", default=None, metavar="STATE",
                    help="with --export-only: export the plain average of the saved state's weights and these "
                         "committed states' (folders or .safetensors files), BatchNorm recomputed for it")
    ap.add_argument("--model-id", default=None)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--smoke", action="store_true", help="a few steps on the built-in phantom, 32^3, temp folders")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.average_with and not args.export_only:
        raise SystemExit("--average-with goes with --export-only")
    t_start = time.time()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    amp_dtype = torch.bfloat16 if args.amp == "bf16" or (args.amp == "auto" and (device.type == "cuda" or
                                                                                  cpu_has_bf16())) else None
    if args.smoke:
        import tempfile
        tmp = Path(tempfile.mkdtemp(prefix="ctarr-train-smoke-"))
        args.steps, args.patch, args.warmup, args.eval_every, args.loader_workers = 4, 32, 1, 2, 0
        args.bn_batches = 2
        args.workdir, args.state = str(tmp / "work"), str(tmp / "state")
        args.commit_state_min = 0.0
        args.out = args.out or str(tmp / "model")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    args.cache = args.cache or str(workdir / "cache")
    args.out = args.out or str(workdir / "model")

    def log(msg):
        print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True)

    train_sources, val_sources = build_sources(args, log)
    for s in train_sources + val_sources:
        log(f"{'train' if s in train_sources else 'VALIDATION'} {s.name} ({s.kind}, {s.group}): 3 mm grid "
            f"{tuple(s.shape)}, classes present {s.present_classes()}")
    sampler = PatchSampler(train_sources, args.patch, AugmentConfig(real_phase_p=args.real_phase_p),
                           group_weights=dict(args.group_weight or []),
                           turns_from_step=args.turns_from_step)
    model = CtarrUNet(args.filters, "batch").to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    state = {"step": 0, "elapsed": 0.0, "curve": [], "evals": [], "runs": []}
    local = workdir / "checkpoint.pt"
    if not args.fresh:
        local_step = checkpoint.load_local(local)["state"]["step"] if local.exists() else -1
        committed = checkpoint.committed_step(args.state)
        if local_step >= 0 and local_step >= committed:
            ck = checkpoint.load_local(local)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            state = ck["state"]
            log(f"resumed {local}: step {state['step']}")
        elif committed >= 0:
            state = checkpoint.load_committed(args.state, model, opt)
            log(f"resumed the committed state {args.state}: step {state['step']}")
    if not (0 <= args.schedule_from <= state["step"] and args.schedule_from < args.steps) and not args.export_only:
        raise SystemExit(f"--schedule-from {args.schedule_from}: expected 0 <= it <= the resumed step "
                         f"{state['step']} and < --steps {args.steps}")

    def model_id(step):
        """The exported model's id: two models of one day are told apart by their step."""
        return args.model_id or f"ctarr-unet-v2-{datetime.date.today().isoformat()}-step{step}"

    if args.export_only:
        rec = training_record(state, args, train_sources, val_sources, sampler, device, amp_dtype)
        if args.average_with:
            try:
                steps = checkpoint.average_model_weights(model, args.average_with)
            except (OSError, ValueError) as e:
                raise SystemExit(f"--average-with: {e}")
            rec["weights_averaged_over_steps"] = sorted(steps + [state["step"]])
            log(f"weights averaged over steps {rec['weights_averaged_over_steps']}")
        evaluate.recalibrate_batchnorm(model, sampler, args.bn_batches, args.batch, amp_dtype=amp_dtype)
        mid = model_id(state["step"])
        if args.average_with and not args.model_id:
            mid += f"-avg{len(rec['weights_averaged_over_steps'])}"
        export.export_model(model.eval(), args.out, mid, args.patch, rec)
        log(f"exported step {state['step']} -> {args.out}")
        return 0

    run = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "from_step": state["step"],
           "hardware": hardware_text(device, args.threads), "command": " ".join(sys.argv)}
    state.setdefault("runs", []).append(run)
    log(f"device {device}, {run['hardware']}, {'bf16 autocast' if amp_dtype else 'float32'}, batch {args.batch}, "
        f"patch {args.patch}, filters {args.filters}, planned steps {args.steps}, this run {args.time_limit_min} min; "
        f"sampling {sampler.describe()['group_probability']}")
    stream = batches(BatchStream(sampler, args.batch, args.seed, state["step"]), args.loader_workers)
    log_f = open(workdir / "log.jsonl", "a")
    t_run, t_ckpt, t_commit = time.time(), time.time(), time.time()
    recent = []

    def save_all(commit):
        nonlocal t_ckpt, t_commit
        run["to_step"], run["minutes"] = state["step"], round((time.time() - t_run) / 60, 1)
        checkpoint.save_local(local, model, opt, state)
        t_ckpt = time.time()
        if commit:  # the exported `latest` with it: its BatchNorm recalibration costs about 40 training steps
            rec = training_record(state, args, train_sources, val_sources, sampler, device, amp_dtype)
            evaluate.recalibrate_batchnorm(model, sampler, args.bn_batches, args.batch, amp_dtype=amp_dtype)
            export.export_model(model.eval(), workdir / "latest", model_id(state["step"]), args.patch, rec)
            model.train()
            checkpoint.save_committed(args.state, model, opt, state)
            t_commit = time.time()
            log(f"committed state: step {state['step']} -> {args.state}")

    # SIGTERM (a job's time limit, `kill`) or SIGINT (Ctrl-C) ends the run after the current step, with the state
    # committed and the model exported as at the time limit; a second signal kills at once.
    stop = []

    def request_stop(signum, _frame):
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)
        log(f"signal {signal.Signals(signum).name}: stopping after this step (again: at once)")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    model.train()
    t_seg = time.time()
    while state["step"] < args.steps and time.time() - t_run < args.time_limit_min * 60 and not stop:
        t0 = time.time()
        x, y, labelled, names = next(stream)
        t_data = time.time() - t0
        lr = learning_rate(state["step"] - args.schedule_from, args.steps - args.schedule_from, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = x.to(device), y.to(device)
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
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
        rec = {"step": state["step"], "lr": lr, "loss": float(loss), "ce": float(ce), "dice_loss": float(dl),
               "data_s": round(t_data, 3), "step_s": round(now - t0, 3), "sources": names}
        if not math.isfinite(rec["loss"]):
            raise SystemExit(f"error: loss is {rec['loss']} at step {state['step']}")
        log_f.write(json.dumps(rec) + "\n")
        add_to_curve(state, rec)
        recent.append(rec)
        if state["step"] % args.log_every == 0 or args.smoke:
            log_f.flush()
            log(f"step {state['step']:6d}  loss {np.mean([r['loss'] for r in recent]):.4f}  ce "
                f"{np.mean([r['ce'] for r in recent]):.4f}  dice {np.mean([r['dice_loss'] for r in recent]):.4f}  "
                f"lr {lr:.2e}  {np.mean([r['step_s'] for r in recent]):.2f} s/step (waiting for data "
                f"{np.mean([r['data_s'] for r in recent]):.2f})  {state['elapsed'] / 3600:.2f} h")
            recent = []
        if state["step"] % args.eval_every == 0:
            t_e = time.time()
            evaluate.recalibrate_batchnorm(model, sampler, args.bn_batches, args.batch, amp_dtype=amp_dtype)
            res = evaluate.evaluate_sources(model, val_sources + [s for s in train_sources if s.kind == "ct"],
                                            amp_dtype)
            state["evals"].append({"step": state["step"], "hours": round(state["elapsed"] / 3600, 2),
                                   "validation": {s.name: res[s.name] for s in val_sources},
                                   "training_ct": {s.name: res[s.name] for s in train_sources if s.kind == "ct"}})
            log(f"eval step {state['step']} ({time.time() - t_e:.1f} s): " +
                "; ".join(f"{n}: " + " ".join(f"{c}={d:.2f}" for c, d in r.items()) for n, r in res.items()))
            t_seg = time.time()
        if time.time() - t_ckpt > args.checkpoint_min * 60 or time.time() - t_commit > args.commit_state_min * 60:
            save_all(commit=time.time() - t_commit > args.commit_state_min * 60)
            t_seg = time.time()
    log_f.close()
    save_all(commit=True)
    rec = training_record(state, args, train_sources, val_sources, sampler, device, amp_dtype)
    evaluate.recalibrate_batchnorm(model, sampler, args.bn_batches, args.batch, amp_dtype=amp_dtype)
    export.export_model(model.eval(), args.out, model_id(state["step"]), args.patch, rec)
    log(f"done: step {state['step']}, {state['elapsed'] / 3600:.2f} h trained in all; model {args.out}")
    if args.smoke:
        import shutil
        shutil.rmtree(Path(args.workdir).parent / "work", ignore_errors=True)
        shutil.rmtree(Path(args.state), ignore_errors=True)
    return 0
