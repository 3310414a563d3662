"""The distillation results table: each loss's student against the teachers on held-out
footage, beside the thesis's figures. Regenerates the README's "Student network" table.

For each training configuration (default, ``--set 192``: the thesis's merged and split losses
and the head-aware loss, identical but for the loss, at 192 px with the scene teacher's centre
cut, linear probe only; ``--set 160`` takes the same three losses at 160 px stretched with
fine-tuning, ``--set 224`` at the scene teacher's own 224 px; or name any list with
``--configs``) it trains the run if its
``best.pt`` is missing (``--train``; resumes a run cut short), then evaluates ``best.pt``
through the ``student`` tagger on the transfer set's test split: top-1 agreement and
nDCG@5/@10 per head (linear gain, the teacher's probability, in both DCG and ideal DCG),
for all test frames and per source kind (video frames, photos). A "prior" row ranks every
frame's labels by their mean teacher probability on the train split: what a student that
learned nothing about the picture would score. ``paired_vs_last`` gives each loss's nDCG minus
the head-aware loss's, frame by frame, with a 95% bootstrap interval: with ~100 test frames
differences of a few hundredths are noise.

    python bench/distill_report.py --train > var/bench/distill_report.json
    python bench/distill_report.py --markdown          # the README table from the runs
    python bench/distill_report.py --markdown --from-json var/bench/distill_report.json \
        var/bench/distill_report_160.json var/bench/distill_report_224.json   # one table
    python bench/distill_report.py --set 160 --train > var/bench/distill_report_160.json
    python bench/distill_report.py --set 224 --train > var/bench/distill_report_224.json

Without ``--train`` nothing is trained: existing runs' ``best.pt`` are evaluated as they are.
The markdown ends with the paired differences (nDCG@5, nDCG@10) as a sentence.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
# Named config lists (--set); the head-aware loss last, as paired_vs_last's reference.
SETS = {
    "192": ["config/train/thesis-merged-192.yaml", "config/train/thesis-split-192.yaml",
            "config/train/head-aware-192.yaml"],
    "160": ["config/train/thesis-merged.yaml", "config/train/thesis-split.yaml",
            "config/train/head-aware.yaml"],
    "224": ["config/train/thesis-merged-224.yaml", "config/train/thesis-split-224.yaml",
            "config/train/head-aware-224.yaml"],
}
# Thesis 5.3.3, "Results on COCO-Places test dataset" (its nDCG mixes two gains: see
# training/evaluation/metrics.py), and "using as test the TV3 dataset".
THESIS = {
    "coco-places test": {"objects": {"top1": 0.49, "ndcg@5": 0.41, "ndcg@10": 0.34},
                         "scenes": {"top1": 0.87, "ndcg@5": 0.98, "ndcg@10": 0.98}},
    "tv3 frames": {"objects": {"top1": 0.72, "ndcg@5": 0.53, "ndcg@10": 0.43},
                   "scenes": {"top1": 0.03, "ndcg@5": 0.025, "ndcg@10": 0.04}},
}


def prior_baseline(ts, ks=(5, 10)) -> dict:
    """Every test frame gets the same ranking: labels by mean teacher probability on train."""
    import numpy as np

    from training.distill.evaluate import evaluate_rows

    priors = {}
    for ls in ts.label_sets:
        train = np.stack([r.logits[ls.name] for r in ts.rows("train")])
        priors[ls.name] = np.log(ls.probabilities(train).mean(axis=0) + 1e-12)

    def predict(frames):
        return {n: np.tile(p, (len(frames), 1)) for n, p in priors.items()}

    return evaluate_rows(ts.rows("test"), predict, ts.label_sets, ks)


def paired_differences(runs: list[dict], ts, settings, ks=(5, 10), resamples: int = 2000
                       ) -> dict:
    """nDCG@k of every run minus the last run's (the head-aware loss), frame by frame on
    the test split, with a 95% bootstrap interval over test frames: are the losses apart?"""
    import numpy as np

    from indexer.taggers import tagger_from_settings
    from training.distill.evaluate import checkpoint_path_settings
    from training.evaluation.metrics import ndcg_at_k

    rows = list(ts.rows("test"))
    teacher = {ls.name: np.stack([r.logits[ls.name] for r in rows]) for ls in ts.label_sets}
    images = [r.image() for r in rows]
    per_frame = []
    for run in runs:
        tagger = tagger_from_settings("student", checkpoint_path_settings(
            settings, Path(run["run_dir"]) / "best.pt"))
        out = tagger.predict(images)
        per_frame.append({(ls.name, k): ndcg_at_k(ls.probabilities(teacher[ls.name]),
                                                  out[ls.name], k)
                          for ls in ts.label_sets for k in ks})
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(rows), (resamples, len(rows)))
    ref = per_frame[-1]
    result = {}
    for run, values in zip(runs[:-1], per_frame[:-1]):
        entry = {}
        for (name, k), v in values.items():
            d = v - ref[(name, k)]
            boot = d[picks].mean(axis=1)
            entry[f"{name} ndcg@{k}"] = {
                "diff": round(float(d.mean()), 4),
                "ci95": [round(float(np.percentile(boot, 2.5)), 4),
                         round(float(np.percentile(boot, 97.5)), 4)]}
        result[f"{run['loss']['name']} - {runs[-1]['loss']['name']}"] = entry
    return result


def run_config(path: Path, settings, train: bool) -> dict:
    from indexer.taggers import tagger_from_settings
    from training.distill.config import load_train_config
    from training.distill.evaluate import checkpoint_path_settings, evaluate_tagger
    from training.distill.fit import fit
    from training.distill.transfer import TransferSet

    cfg = load_train_config(path)
    best = cfg.run_dir / "best.pt"
    history_path = cfg.run_dir / "history.jsonl"
    done = history_path.exists() and best.exists() and (cfg.run_dir / "last.pt").exists()
    if train and not done:
        fit(cfg, settings, resume=(cfg.run_dir / "last.pt").exists())
    elif train:
        import torch

        last = torch.load(cfg.run_dir / "last.pt", map_location="cpu", weights_only=True)
        stopped = last["bad_epochs"] >= cfg.optim.patience > 0
        if last["epoch"] + 1 < cfg.optim.epochs and not stopped:
            fit(cfg, settings, resume=True)
    if not best.exists():
        raise SystemExit(f"{best} is missing: run with --train (or tvindex train fit --config "
                         f"{path})")
    history = [json.loads(x) for x in history_path.read_text().splitlines() if x.strip()]
    student = tagger_from_settings("student", checkpoint_path_settings(settings, best))
    report = evaluate_tagger(student, TransferSet(cfg.transfer), "test")
    try:
        shown = Path(path).resolve().relative_to(REPO)
    except ValueError:
        shown = Path(path)
    return {
        "config": str(shown),
        "run_dir": str(cfg.run_dir),
        "loss": student.meta["loss"],
        "student": {k: student.meta[k] for k in ("arch", "image_size", "resize")},
        # The linear probe is logged as epoch -1; epochs_run counts fine-tuning epochs only.
        "probe": any(h.get("epoch", 0) < 0 for h in history),
        "epochs_run": sum(1 for h in history if h.get("epoch", 0) >= 0),
        "best_epoch": student.meta["metrics"]["epoch"],
        "train_seconds": history[-1]["elapsed_s"] if history else None,
        "train_frames_per_s": [h.get("train_frames_per_s") for h in history],
        "val_score": student.meta["metrics"]["score"],
        "test": report["heads"],
        "test_frames": report["frames"],
        "test_sources": report["sources"],
    }


def input_of(run: dict) -> str:
    """'192 px centre cut': a run's input size and resize rule."""
    st = run.get("student", {})
    cut = {"center_crop": "centre cut", "stretch": "stretched"}.get(st.get("resize"),
                                                                     st.get("resize", ""))
    return f"{st.get('image_size', '?')} px {cut}".strip()


def markdown(reports: list[dict]) -> str:
    """One table for one or more reports (e.g. the three input settings): the thesis and prior
    rows once, then every run with its input; then each report's paired differences."""
    heads = reports[0]["heads"]  # {"objects": "coco80", "scenes": "imagenet1k"}
    lines = [
        (f"| student (loss) | input | {heads['objects']} top-1 | nDCG@5 | nDCG@10 | "
         f"{heads['scenes']} top-1 | nDCG@5 | nDCG@10 | train wall time |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cells(m: dict, fmt: str = ".2f") -> str:
        return " | ".join(format(m[k], fmt) if isinstance(m.get(k), float) else "-"
                          for k in ("top1", "ndcg@5", "ndcg@10"))

    for name, m in reports[0]["thesis"].items():
        # As published (0.025 stays 0.025).
        lines.append(f"| thesis, {name} (its own nDCG) | - | {cells(m['objects'], 'g')} | "
                     f"{cells(m['scenes'], 'g')} | - |")
    p = reports[0]["prior"]
    lines.append(f"| no student: labels by train-set prior | - | "
                 f"{cells(p[heads['objects']]['all'])} | {cells(p[heads['scenes']]['all'])} | - |")
    for report in reports:
        for run in report["runs"]:
            t = run["test"]
            secs = run["train_seconds"]
            best = "probe" if run["best_epoch"] < 0 else f"ep. {run['best_epoch'] + 1}"
            done = "probe" if run.get("probe") and not run["epochs_run"] else (
                ("probe + " if run.get("probe") else "") + f"{run['epochs_run']} ep.")
            wall = f"{secs / 60:.0f} min ({done}; best: {best})" if secs else "-"
            lines.append(f"| {Path(run['config']).stem} (loss `{run['loss']['name']}`) | "
                         f"{input_of(run)} | "
                         f"{cells(t[heads['objects']]['all'])} | "
                         f"{cells(t[heads['scenes']]['all'])} | {wall} |")
    paired = [paired_sentence(r) for r in reports]
    named = [(f"{input_of(r['runs'][0])}: " if len(reports) > 1 else "") + text
             for r, text in zip(reports, paired) if text]
    return "\n".join(lines) + ("\n\n" + "\n\n".join(named) if named else "")


def paired_sentence(report: dict) -> str:
    """``paired_vs_last`` as one sentence per nDCG cut-off (empty when there is none)."""
    pairs = report.get("paired_vs_last") or {}
    if not pairs:
        return ""
    heads = report["heads"]
    ref = report["runs"][-1]["loss"]["name"] if report.get("runs") else "the last run"
    out = []
    for k in (5, 10):
        parts = []
        for head in (heads["objects"], heads["scenes"]):
            items = []
            for pair, entry in pairs.items():
                e = entry.get(f"{head} ndcg@{k}")
                if e is None:
                    continue
                lo, hi = e["ci95"]
                items.append(f"{pair.split(' - ')[0]} {e['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            if items:
                parts.append(f"{head}: " + ", ".join(items))
        if parts:
            out.append(f"nDCG@{k} minus the {ref} loss's, paired on the test frames (95% "
                       f"bootstrap interval over frames): " + "; ".join(parts) + ".")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", type=Path,
                   help="training configurations (default: those of --set); the last one is "
                        "the reference of the paired differences")
    p.add_argument("--set", choices=sorted(SETS), default="192", dest="config_set",
                   help="named config list: 192 (the README table and the production "
                        "student's input, centre cut, probe only), 160 (stretched, fine-tuned) "
                        "or 224 (centre cut, probe only)")
    p.add_argument("--train", action="store_true", help="train runs whose best.pt is missing")
    p.add_argument("--markdown", action="store_true", help="print the README table, not JSON")
    p.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                   help="with --markdown: one table from saved reports, evaluating nothing")
    args = p.parse_args(argv)
    if args.from_json:
        if not args.markdown:
            p.error("--from-json goes with --markdown")
        print(markdown([json.loads(f.read_text()) for f in args.from_json]))
        return 0
    if args.configs is None:
        args.configs = [REPO / c for c in SETS[args.config_set]]

    from training.distill.config import load_train_config
    from training.distill.evaluate import machine
    from training.distill.transfer import TransferSet, describe
    from tvindex.settings import load_settings

    settings = load_settings()
    t0 = time.perf_counter()
    runs = [run_config(c, settings, args.train) for c in args.configs]
    ts = TransferSet(load_train_config(args.configs[0]).transfer)
    sets = {ls.name: ls.activation for ls in ts.label_sets}
    heads = {"objects": next(n for n, a in sets.items() if a == "sigmoid"),
             "scenes": next(n for n, a in sets.items() if a == "softmax")}
    report = {
        "benchmark": "distill_report",
        "config_set": None if args.configs != [REPO / c for c in SETS[args.config_set]]
        else args.config_set,
        "gain": "linear: gain = the teacher's probability, in DCG and ideal DCG alike",
        "split": "test = source groups never seen in training (hash of the group id)",
        "transfer": {k: v for k, v in describe(ts).items() if k != "failed"},
        "heads": heads,
        "thesis": THESIS,
        "prior": prior_baseline(ts),
        "runs": runs,
        "paired_vs_last": paired_differences(runs, ts, settings),
        "machine": machine(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.markdown:
        print(markdown([report]))
    else:
        json.dump(report, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
