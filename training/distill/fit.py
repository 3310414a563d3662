"""The training loop: a student learns the teachers' logits on a transfer set.

Per run folder (``<output_dir>/<name>/``): ``config.yaml`` (the resolved configuration),
``history.jsonl`` (one line per epoch: losses, validation metrics, learning rate, time),
``last.pt`` (everything needed to resume: weights, optimiser, schedule, loss state, RNG, the
early-stopping state; written every epoch) and ``best.pt`` (the self-describing student
checkpoint of the best validation epoch, what the ``student`` tagger loads).

Optionally (``optim.probe_epochs``) the new heads are first trained alone on pooled features
of the stored frames and views, computed once (a linear probe), and only then is the network
fine-tuned end to end: "LP-FT" (Kumar et al., ICLR 2022), which distorts the pretrained
features less than fine-tuning under randomly initialised heads, and costs one forward pass
per frame on a CPU. AdamW or SGD, linear warm-up then cosine decay per step, gradient
clipping; on CUDA mixed precision (bf16 where supported, else fp16 with loss scaling) and
channels-last layout. Early stopping on the validation score (mean nDCG@5 over heads by
default). In ``history.jsonl`` the probe is epoch -1.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from indexer.taggers.preprocess import to_chw_float
from indexer.taggers.student import StudentNet, preprocess, write_checkpoint
from indexer.taggers.torch_tagger import resolve_device
from training.distill.augment import BroadcastAugment
from training.distill.config import TrainConfig
from training.distill.data import TransferStream
from training.distill.evaluate import evaluate_rows, model_predictor
from training.distill.losses import DistillLoss, create_loss
from training.distill.student import checkpoint_meta, create_student, set_train_mode
from training.distill.transfer import Row, TransferSet
from training.evaluation.metrics import summary_score
from tvindex.settings import Settings

log = logging.getLogger(__name__)


class TrainError(RuntimeError):
    """Training cannot start or continue (existing run, missing state, empty split)."""


@dataclass
class FitResult:
    run_dir: Path
    best_checkpoint: Path | None
    best_epoch: int
    best_score: float
    epochs_run: int
    seconds: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "best_checkpoint": str(self.best_checkpoint),
                "best_epoch": self.best_epoch, "best_score": round(self.best_score, 4),
                "epochs_run": self.epochs_run, "seconds": round(self.seconds, 1),
                "stopped_early": self.stopped_early}


def _param_groups(model: StudentNet, loss: DistillLoss, cfg: TrainConfig) -> list[dict]:
    """Backbone at lr * backbone_lr_scale, heads and loss parameters at lr; no weight decay on
    biases, norms and loss parameters."""
    o = cfg.optim
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = "backbone" if name.startswith("backbone.") else "heads"
        groups.setdefault((part, p.ndim > 1), []).append(p)
    out = []
    for (part, decay), params in groups.items():
        lr = o.lr * (o.backbone_lr_scale if part == "backbone" else 1.0)
        out.append({"params": params, "lr": lr, "weight_decay": o.weight_decay if decay else 0.0})
    extra = [p for p in loss.parameters() if p.requires_grad]
    if extra:
        out.append({"params": extra, "lr": o.lr, "weight_decay": 0.0})
    return out


def _optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=o.lr)


def _schedule(opt: torch.optim.Optimizer, warmup_steps: int, total_steps: int
              ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 1% to 100%, then cosine decay to 1% of each group's lr."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.01 + 0.99 * step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _amp_dtype(device: torch.device, cfg: TrainConfig) -> torch.dtype | None:
    if device.type != "cuda" or not cfg.runtime.mixed_precision:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _read_history(path: Path, before_epoch: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [h for h in lines if h["epoch"] < before_epoch]


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a run and its resumption (epochs and runtime may)."""
    d = json.loads(json.dumps(cfg))
    d.pop("runtime", None)
    d.pop("export", None)
    d.get("optim", {}).pop("epochs", None)
    d.get("optim", {}).pop("patience", None)
    return d


def probe_features(model: StudentNet, rows: Iterable[Row], cfg: TrainConfig,
                   device: torch.device, amp_dtype: torch.dtype | None = None,
                   total: int | None = None, progress: bool = False
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """Pooled backbone features of ``rows`` (eval mode, no augmentation) with their teacher
    logits and source groups: what a linear probe trains on. Returns (features [N, F],
    {label set: logits [N, n]}, groups [N])."""
    from tqdm import tqdm

    s = cfg.student
    feats: list[torch.Tensor] = []
    targets: dict[str, list[torch.Tensor]] = {}
    groups: list[str] = []
    images: list = []

    def encode() -> None:
        x = torch.from_numpy(to_chw_float([preprocess(im, s.image_size, s.resize)
                                           for im in images], s.mean, s.std)).to(device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype,
                                                    enabled=amp_dtype is not None):
            feats.append(model.forward_features(x).float())
        images.clear()

    model.eval()
    for row in tqdm(rows, total=total, desc="probe: features", unit="frame", file=sys.stderr,
                    disable=not progress or None, leave=False):
        images.append(row.image())
        groups.append(row.group)
        for n, logits in row.logits.items():
            targets.setdefault(n, []).append(torch.from_numpy(logits))
        if len(images) >= cfg.eval.batch_size:
            encode()
    if images:
        encode()
    teacher = {n: torch.stack(v).to(device) for n, v in targets.items()}
    return torch.cat(feats), teacher, groups


def train_heads(model: StudentNet, loss_fn: DistillLoss, features: torch.Tensor,
                teacher: dict[str, torch.Tensor], cfg: TrainConfig, device: torch.device
                ) -> dict[str, float]:
    """Train only the heads (and loss parameters) on precomputed features for
    ``optim.probe_epochs``; returns the mean training losses."""
    o = cfg.optim
    params = list(model.heads.parameters()) + [p for p in loss_fn.parameters()
                                               if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=o.probe_lr, weight_decay=o.weight_decay)
    n, bs = len(features), o.batch_size
    steps = max(1, n // bs) * o.probe_epochs
    sched = _schedule(opt, 0, steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.dropout.train()
    loss_fn.train()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for _ in range(o.probe_epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, max(1, n - bs + 1), bs):
            idx = order[start:start + bs]
            out = model.forward_heads(features[idx])
            total, parts = loss_fn(out, {k: v[idx] for k, v in teacher.items()})
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            for k, v in {"loss": total.detach(), **parts}.items():
                sums[k] = sums[k] + v if k in sums else v
            count += 1
    model.dropout.eval()
    return {k: round(float(v) / max(1, count), 5) for k, v in sums.items()}


def _linear_probe(model: StudentNet, loss_fn: DistillLoss, ts: TransferSet, cfg: TrainConfig,
                  device: torch.device, amp_dtype: torch.dtype | None, progress: bool
                  ) -> dict[str, float]:
    """Train only the heads (and loss parameters) on pooled features of every stored train
    frame and view, computed once in eval mode; returns the mean training losses."""
    features, teacher, _ = probe_features(model, ts.rows("train", views=True), cfg, device,
                                          amp_dtype, ts.count("train", views=True), progress)
    return train_heads(model, loss_fn, features, teacher, cfg, device)


def fit(cfg: TrainConfig, settings: Settings, *, resume: bool = False, progress: bool = True,
        log_epochs: bool = True) -> FitResult:
    """Train (or resume training) the student described by ``cfg``; see the module docstring.
    ``progress``: a progress bar per epoch; ``log_epochs``: one summary line per epoch (both on
    stderr)."""
    from tqdm import tqdm

    ts = TransferSet(cfg.transfer)
    n_train = ts.count("train", views=True)
    if n_train == 0:
        raise TrainError(f"{cfg.transfer}: the train split is empty")
    run_dir = cfg.run_dir
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    state: dict[str, Any] | None = None
    if resume:
        if not last_path.exists():
            raise TrainError(f"{run_dir}: nothing to resume (no last.pt)")
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if _comparable(state["config"]) != _comparable(cfg.model_dump(mode="json")):
            raise TrainError(f"{run_dir}: the configuration differs from the run being resumed "
                             "(only optim.epochs, optim.patience, runtime and export may change)")
    elif last_path.exists():
        raise TrainError(f"{run_dir} already holds a run; pass --resume to continue it or pick "
                         "another name")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")

    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.runtime.device)
    amp_dtype = _amp_dtype(device, cfg)
    channels_last = device.type == "cuda" and cfg.runtime.channels_last

    model = create_student(cfg.student, ts.label_sets, settings).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = create_loss(cfg.loss.name, ts.label_sets, **cfg.loss.params()).to(device)
    opt = _optimizer(_param_groups(model, loss_fn, cfg), cfg)
    bs = cfg.optim.batch_size
    drop_last = n_train >= bs
    steps_per_epoch = max(1, n_train // bs if drop_last else 1)
    sched = _schedule(opt, round(cfg.optim.warmup_epochs * steps_per_epoch),
                      cfg.optim.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    start_epoch, best_score, best_epoch, bad_epochs, elapsed = 0, -math.inf, -1, 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"] + 1
        best_score, best_epoch = state["best_score"], state["best_epoch"]
        bad_epochs, elapsed = state["bad_epochs"], state["elapsed"]
    history = _read_history(run_dir / "history.jsonl", start_epoch)
    (run_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history),
                                           encoding="utf-8")

    s = cfg.student
    stream = TransferStream(ts, "train", BroadcastAugment(cfg.augment, s.image_size, s.resize),
                            s.mean, s.std, views=True, shuffle=True, seed=cfg.seed,
                            buffer=cfg.runtime.shuffle_buffer)
    loader = torch.utils.data.DataLoader(stream, batch_size=bs, drop_last=drop_last,
                                         num_workers=cfg.runtime.workers,
                                         pin_memory=device.type == "cuda")
    predict = model_predictor(model, s.image_size, s.resize, s.mean, s.std, device,
                              cfg.eval.batch_size, amp_dtype)
    n_val = ts.count("val")
    meta = checkpoint_meta(s, ts.label_sets, ts.teachers,
                           {ls.name: loss_fn.target_space(ls.name) for ls in ts.label_sets})
    def validate(train_loss: float) -> tuple[dict[str, dict[str, float]], float]:
        if not n_val:  # no validation frames (tiny sets): select on the training loss
            return {}, -train_loss
        val = evaluate_rows(ts.rows("val"), predict, ts.label_sets, cfg.eval.ks,
                            cfg.eval.gain, cfg.eval.batch_size)
        heads = {name: groups["all"] for name, groups in val.items()}
        return heads, summary_score(heads, cfg.eval.select)

    def save_best(epoch: int, val_heads: dict, score: float) -> None:
        write_checkpoint(best_path, model, {
            **meta,
            "teachers": ts.teachers,
            "loss": {"name": cfg.loss.name, **cfg.loss.params()},
            "metrics": {"val": val_heads, "score": score, "select": cfg.eval.select,
                        "epoch": epoch, "train_seconds": round(elapsed, 1)},
            "transfer": {"root": str(cfg.transfer), "frames": ts.counts(),
                         "frames_with_views": ts.counts(views=True)},
            "config": cfg.model_dump(mode="json"),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        })

    def log_line(label: str, loss: float, val_heads: dict, score: float, improved: bool,
                 seconds: float) -> None:
        if log_epochs:
            heads = "  ".join(f"{n} top1 {m.get('top1', 0):.2f} nDCG@5 {m.get('ndcg@5', 0):.3f}"
                              for n, m in val_heads.items())
            print(f"{label}: loss {loss:.4f}  {heads}  score {score:.4f}"
                  f"{' *' if improved else ''}  ({seconds:.0f} s)", file=sys.stderr)

    def save_last(epoch: int) -> None:
        """Everything needed to resume after ``epoch`` (-1: after the linear probe)."""
        torch.save({"model": model.state_dict(), "loss": loss_fn.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                    "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs, "elapsed": elapsed,
                    "config": cfg.model_dump(mode="json")}, last_path.with_suffix(".tmp"))
        last_path.with_suffix(".tmp").replace(last_path)

    if state is None and cfg.optim.probe_epochs:
        t0 = time.perf_counter()
        train = _linear_probe(model, loss_fn, ts, cfg, device, amp_dtype, progress)
        val_heads, score = validate(train["loss"])
        elapsed += time.perf_counter() - t0
        best_score, best_epoch = score, -1
        save_best(-1, val_heads, score)
        record = {"epoch": -1, "stage": "probe", "train": train, "val": val_heads,
                  "score": round(score, 5), "epoch_s": round(time.perf_counter() - t0, 1),
                  "elapsed_s": round(elapsed, 1), "best": True}
        history.append(record)
        with open(run_dir / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        save_last(-1)
        log_line(f"linear probe ({cfg.optim.probe_epochs} epochs on cached features)",
                 train["loss"], val_heads, score, True, record["epoch_s"])

    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.optim.epochs):
        t0 = time.perf_counter()
        set_train_mode(model)
        loss_fn.train()
        stream.set_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        seen = steps = 0
        bar = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                   unit="batch", file=sys.stderr, disable=not progress or None, leave=False)
        for x, teacher in bar:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            teacher = {k: v.to(device, non_blocking=True) for k, v in teacher.items()}
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(x)
            total, parts = loss_fn(out, teacher)
            opt.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if cfg.optim.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(
                    [p for g in opt.param_groups for p in g["params"]], cfg.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            steps += 1
            seen += len(x)
            for k, v in {"loss": total.detach(), **parts}.items():
                sums[k] = sums[k] + v if k in sums else v
            if progress and steps % 10 == 0:
                bar.set_postfix_str(f"loss {float(sums['loss']) / steps:.4f}")
        train_s = time.perf_counter() - t0
        train = {k: round(float(v) / max(1, steps), 5) for k, v in sums.items()}
        val_heads, score = validate(train["loss"])
        elapsed += time.perf_counter() - t0
        improved = score > best_score
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch, 0
        else:
            bad_epochs += 1
        record = {"epoch": epoch, "train": train, "val": val_heads, "score": round(score, 5),
                  "lr": opt.param_groups[0]["lr"], "train_s": round(train_s, 1),
                  "epoch_s": round(time.perf_counter() - t0, 1),
                  "train_frames_per_s": round(seen / train_s, 1) if train_s else None,
                  "elapsed_s": round(elapsed, 1), "best": improved}
        history.append(record)
        if improved:
            save_best(epoch, val_heads, score)
        save_last(epoch)
        with open(run_dir / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        log_line(f"epoch {epoch + 1}/{cfg.optim.epochs}", train["loss"], val_heads, score,
                 improved, record["epoch_s"])
        if cfg.optim.patience and bad_epochs >= cfg.optim.patience:
            stopped_early = True
            break
    if cfg.export is not None and best_path.exists():
        cfg.export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best_path, cfg.export)
    return FitResult(run_dir, best_path if best_path.exists() else None, best_epoch,
                     best_score, epoch + 1, elapsed, stopped_early, history)
