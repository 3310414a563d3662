"""Training, evaluation and prediction of a genre tagger.

A run folder (``<output_dir>/<name>/``) holds ``config.yaml`` (the resolved configuration),
``history.jsonl`` (one line per epoch), ``last.pt`` (weights, optimiser, RNG state and the
best score: written every epoch, so ``resume`` continues where a run stopped) and
``best.pt`` (the model of the best epoch with everything needed to predict: its genres,
input sizes, profile sets and configuration). CPU by default, CUDA when present
(``device: auto``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.genres.config import GenreTrainConfig
from training.genres.data import EpisodeSequences, collate
from training.genres.losses import create_loss
from training.genres.metrics import evaluate
from training.genres.models import create_model
from tvindex.core.files import write_atomic

log = logging.getLogger(__name__)


class GenreTrainError(RuntimeError):
    """Training cannot start or continue (no labelled episodes, an existing run, a missing
    checkpoint)."""


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise GenreTrainError(f"device is {spec!r} but no CUDA device is available")
    return torch.device(spec)


@dataclass
class GenreModel:
    """A trained tagger: the network and what its outputs mean."""

    net: nn.Module
    genres: list[str]
    max_len: int
    profile_sets: tuple[str, ...]
    device: torch.device
    meta: dict[str, Any]

    @torch.inference_mode()
    def probabilities(self, data: EpisodeSequences, idx: np.ndarray | None = None,
                      batch_size: int = 64) -> np.ndarray:
        """[N, G] probabilities of the episodes ``idx`` (all when None)."""
        self.net.eval()
        rows = np.arange(len(data)) if idx is None else np.asarray(idx, np.int64)
        out = np.zeros((len(rows), len(self.genres)), np.float32)
        for s in range(0, len(rows), batch_size):
            x, mask, prof = collate(data, rows[s:s + batch_size], self.max_len)
            logits = self.net(*_tensors(x, mask, prof, self.device))
            out[s:s + batch_size] = torch.sigmoid(logits.float()).cpu().numpy()
        return out


def _tensors(x: np.ndarray, mask: np.ndarray, prof: np.ndarray | None, device: torch.device):
    return (torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device),
            None if prof is None else torch.from_numpy(prof).to(device))


def _build(cfg: GenreTrainConfig, dim: int, n_genres: int, profile_dim: int) -> nn.Module:
    return create_model(cfg.model.name, dim=dim, n_genres=n_genres, profile_dim=profile_dim,
                        **cfg.model.params())


def train(cfg: GenreTrainConfig, data: EpisodeSequences, split: dict[str, np.ndarray], *,
          run_dir: Path | None = None, resume: bool = False) -> tuple[GenreModel, dict]:
    """Train on ``split["train"]`` (select the best epoch on ``split["val"]`` by mAP when it
    is not empty, else keep the last), and evaluate on ``split["test"]`` when not empty.
    With ``run_dir`` the run is written there (and ``resume`` continues it); without, it
    stays in memory (the benchmark). Returns the model and a summary."""
    train_idx = np.asarray(split["train"], np.int64)
    val_idx = np.asarray(split.get("val", []), np.int64)
    test_idx = np.asarray(split.get("test", []), np.int64)
    genres = data.vocabulary(train_idx, cfg.data.min_episodes)
    if not len(train_idx) or not genres:
        raise GenreTrainError("no labelled episodes to train on: give programmes a genre in "
                              "the catalogue (the manifest's genre column, ';'-separated)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    net = _build(cfg, data.dim, len(genres), data.profile_dim).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    loss_fn = create_loss(cfg.loss.name, gamma_pos=cfg.loss.gamma_pos,
                          gamma_neg=cfg.loss.gamma_neg, margin=cfg.loss.margin)
    y_train = torch.from_numpy(data.targets(genres, train_idx)).to(device)
    rng = np.random.default_rng(cfg.seed)
    meta = {"model": cfg.model.name, "params": cfg.model.params(), "dim": data.dim,
            "profile_dim": data.profile_dim, "profile_sets": list(data.profile_sets),
            "genres": genres, "max_len": cfg.data.max_len, "config": cfg.model_dump(mode="json"),
            "embedding_model": data.meta.get("embedding_model")}
    start, best, best_epoch, stale, history = 0, -1.0, -1, 0, []
    last = run_dir / "last.pt" if run_dir else None
    if run_dir is not None:
        if last.exists() and not resume:
            raise GenreTrainError(f"{run_dir} holds a run already: resume it (--resume) or "
                                  "choose another name (name=... or --name)")
        if resume and not last.exists():
            raise GenreTrainError(f"nothing to resume in {run_dir} (no last.pt)")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "config.yaml", cfg.to_yaml().encode())
        if resume:
            state = torch.load(last, map_location=device, weights_only=False)
            if state["meta"]["genres"] != genres or state["meta"]["dim"] != data.dim:
                raise GenreTrainError(f"{run_dir}: the data changed since the run started "
                                      "(other genres or embedding size); start a new run")
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            rng = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            start, best, best_epoch, stale = (state["epoch"] + 1, state["best"],
                                              state["best_epoch"], state["stale"])
            history = state["history"]
    model = GenreModel(net, genres, cfg.data.max_len, data.profile_sets, device, meta)
    bs = cfg.optim.batch_size
    for epoch in range(start, cfg.optim.epochs):
        t0 = time.perf_counter()
        net.train()
        order = rng.permutation(len(train_idx))
        total = 0.0
        for s in range(0, len(order), bs):
            rows = order[s:s + bs]
            x, mask, prof = collate(data, train_idx[rows], cfg.data.max_len, rng)
            logits = net(*_tensors(x, mask, prof, device))
            loss = loss_fn(logits, y_train[torch.from_numpy(rows).to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(rows)
        line: dict[str, Any] = {"epoch": epoch, "loss": total / len(order),
                                "seconds": round(time.perf_counter() - t0, 3)}
        improved = True
        if len(val_idx):
            score = evaluate(data.targets(genres, val_idx),
                             model.probabilities(data, val_idx))["map"]
            line["val_map"] = score
            improved = score > best
            if improved:
                best, best_epoch, stale = score, epoch, 0
            else:
                stale += 1
        else:
            best_epoch = epoch
        history.append(line)
        if run_dir is not None:
            if improved:
                torch.save({"meta": meta, "net": net.state_dict(), "epoch": epoch},
                           run_dir / "best.pt")
            torch.save({"meta": meta, "net": net.state_dict(), "opt": opt.state_dict(),
                        "rng": rng, "torch_rng": torch.get_rng_state(), "epoch": epoch,
                        "best": best, "best_epoch": best_epoch, "stale": stale,
                        "history": history}, last)
            with open(run_dir / "history.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        if cfg.optim.patience and stale >= cfg.optim.patience:
            break
    if run_dir is not None and (run_dir / "best.pt").exists():
        model = load_model(run_dir / "best.pt", cfg.device)
    summary: dict[str, Any] = {"genres": genres, "epochs": len(history),
                               "best_epoch": best_epoch, "train_episodes": len(train_idx),
                               "test_episodes": len(test_idx),
                               "seconds": round(sum(h["seconds"] for h in history), 2)}
    if len(test_idx):
        summary["test"] = evaluate(data.targets(genres, test_idx),
                                   model.probabilities(data, test_idx),
                                   threshold=cfg.predict.threshold)
    return model, summary


def load_model(path: str | Path, device: str = "auto") -> GenreModel:
    """A trained tagger from its ``best.pt`` (or a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.exists():
        raise GenreTrainError(f"no trained genre model at {path}; run tvindex genres fit first")
    dev = resolve_device(device)
    state = torch.load(path, map_location=dev, weights_only=False)
    meta = state["meta"]
    net = create_model(meta["model"], dim=meta["dim"], n_genres=len(meta["genres"]),
                       profile_dim=meta["profile_dim"], **meta["params"]).to(dev)
    net.load_state_dict(state["net"])
    net.eval()
    return GenreModel(net, list(meta["genres"]), int(meta["max_len"]),
                      tuple(meta["profile_sets"]), dev, meta)
