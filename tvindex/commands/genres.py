"""``tvindex genres fit|evaluate|predict``: genre and programme-type tagging learnt from the
catalogue's own genre metadata (training/genres; docs/genres.md).

  fit [--config FILE]        train on the episodes whose programme has genres (split by
                             programme: no programme in both training and test)
  evaluate RUN               the run's model on its held-out programmes (or --holdout ones)
  predict RUN                tag the episodes and programmes without genres (--all: every one)
                             and store the predictions (score, predicted flag)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tvindex.commands._common import (
    CommandError,
    add_data_dir,
    add_json,
    command_parser,
    require_catalogue,
)
from tvindex.settings import REPO_ROOT, Settings

# The default run: found beside the code, whatever the working directory.
DEFAULT_CONFIG = REPO_ROOT / "config" / "train" / "genres-lstm.yaml"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "genres", help="learn genres from the catalogue's metadata and tag the rest",
        description=__doc__ or "",
        examples=["tvindex genres fit --data-dir var/demo",
                  "tvindex genres evaluate var/runs/genres-lstm --data-dir var/demo",
                  "tvindex genres predict var/runs/genres-lstm --data-dir var/demo",
                  "tvindex genres STEP --help     # each step's options and examples"])
    steps = p.add_subparsers(dest="genres_step", metavar="STEP", required=True)

    f = command_parser(
        steps, "fit", help="train a genre tagger on the catalogue's genre metadata",
        description="Train a multi-label genre classifier on the indexed episodes whose "
                    "programme has genres (the manifest's genre column, ';'-separated), from "
                    "each episode's sequence of segment embeddings; the programmes are split "
                    "into training and test (never both). Writes <output_dir>/<name>/ "
                    "(config.yaml, history.jsonl, last.pt, best.pt) and prints the test "
                    "metrics.",
        examples=["tvindex genres fit --data-dir var/demo",
                  "tvindex genres fit --config config/train/genres-mean.yaml --set optim.epochs=80",
                  "tvindex genres fit --holdout la-placa --output-dir /tmp/runs --json",
                  "tvindex genres fit --resume     # continue a stopped run"])
    f.add_argument("--config", dest="genre_config", type=Path, metavar="FILE",
                   help="training configuration (default config/train/genres-lstm.yaml)")
    f.add_argument("--set", dest="assignments", action="append", default=[],
                   metavar="KEY=VALUE", help="override a configuration value (repeatable)")
    f.add_argument("--output-dir", type=Path, metavar="DIR",
                   help="where runs are written (default: the configuration's output_dir)")
    f.add_argument("--name", help="the run's name (default: the configuration's name)")
    f.add_argument("--holdout", nargs="+", metavar="PROGRAMME",
                   help="programme ids held out for testing (instead of split.test)")
    f.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    add_data_dir(f)
    add_json(f, "print the run's summary and test metrics as JSON")
    f.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})

    v = command_parser(
        steps, "evaluate", help="a trained tagger on held-out programmes",
        description="Precision, recall and F1 (micro, macro, samples) at top-1..5 and "
                    "thresholded, and mAP, of a run's model on the programmes its "
                    "configuration held out (or those given).",
        examples=["tvindex genres evaluate var/runs/genres-lstm --data-dir var/demo",
                  "tvindex genres evaluate var/runs/genres-lstm --holdout la-placa --json"])
    v.add_argument("run", type=Path, help="a run folder (genres fit) or its best.pt")
    v.add_argument("--holdout", nargs="+", metavar="PROGRAMME",
                   help="programme ids to evaluate on (default: the run's test split)")
    add_data_dir(v)
    add_json(v, "print the metrics as JSON")
    v.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})

    r = command_parser(
        steps, "predict", help="tag episodes and programmes and store the predictions",
        description="Predict the genres of the indexed episodes whose programme has none "
                    "(--all: of every episode) and of those programmes, and store them with "
                    "their scores, marked predicted (they replace the previous predictions). "
                    "Search them with anygenre:NAME.",
        examples=["tvindex genres predict var/runs/genres-lstm --data-dir var/demo",
                  "tvindex genres predict var/runs/genres-lstm --all --threshold 0.4 --json",
                  "tvindex genres predict var/runs/genres-lstm --dry-run"])
    r.add_argument("run", type=Path, help="a run folder (genres fit) or its best.pt")
    r.add_argument("--all", dest="everything", action="store_true",
                   help="predict for every episode, not only those without genres")
    r.add_argument("--threshold", type=float, metavar="P",
                   help="keep genres whose probability reaches P (default: the run's "
                        "predict.threshold)")
    r.add_argument("--dry-run", action="store_true", help="print the predictions, store nothing")
    add_data_dir(r)
    add_json(r, "print the predictions as JSON")
    r.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})


def run(args: argparse.Namespace, settings: Settings) -> int:
    from training.genres.fit import GenreTrainError
    from tvindex.errors import UserError

    step = {"fit": _fit, "evaluate": _evaluate, "predict": _predict}
    try:
        return step[args.genres_step](args, settings)
    except (GenreTrainError, ValueError) as exc:
        raise UserError(str(exc)) from exc


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=1)
    print()


def _load_data(settings: Settings, profile_sets: Any = ()):
    from search.store import open_store
    from training.genres.data import from_store

    require_catalogue(settings)
    with open_store(settings) as store:
        data = from_store(store, profile_sets=tuple(profile_sets))
    if not len(data):
        raise CommandError("no indexed episode has segment embeddings: index the catalogue "
                           "with an embedding tagger first (tvindex index)", "input")
    return data


def _split(cfg: Any, data: Any, holdout: list[str] | None):
    import numpy as np

    from training.genres.splits import holdout as held_split
    from training.genres.splits import split_by_programme

    labelled = data.labelled()
    progs = [data.programme_ids[i] for i in labelled]
    held = holdout or cfg.split.holdout
    if held:
        unknown = sorted(set(held) - set(data.programme_ids))
        if unknown:
            raise CommandError(f"no indexed programme {unknown[0]!r} to hold out", "not_found")
        # A held-out programme is tested on even when its genres are hidden from training.
        parts = held_split([data.programme_ids[i] for i in range(len(data))], held)
        return {"train": np.setdiff1d(labelled, parts["test"]), "val": parts["val"],
                "test": np.intersect1d(labelled, parts["test"])}
    parts = split_by_programme(progs, test=cfg.split.test, val=cfg.split.val, seed=cfg.seed)
    return {k: labelled[v] for k, v in parts.items()}


def _metrics_lines(m: dict[str, Any]) -> list[str]:
    lines = [f"  mAP {m['map']:.3f} on {m['n']} episodes"]
    for key in [k for k in m if k.startswith("top")] + ["threshold"]:
        row = "  ".join(f"{avg} P {m[key][avg]['precision']:.2f} R {m[key][avg]['recall']:.2f} "
                        f"F1 {m[key][avg]['f1']:.2f}" for avg in ("micro", "macro", "samples"))
        lines.append(f"  {key:<9} {row}")
    return lines


def _fit(args: argparse.Namespace, settings: Settings) -> int:
    from training.distill.config import parse_assignment
    from training.genres.config import load_genre_config
    from training.genres.fit import train

    overrides = dict(parse_assignment(a) for a in args.assignments)
    if args.output_dir:
        overrides["output_dir"] = str(args.output_dir)
    if args.name:
        overrides["name"] = args.name
    path = args.genre_config or DEFAULT_CONFIG
    cfg = load_genre_config(path, overrides)
    data = _load_data(settings, cfg.data.profile_sets)
    split = _split(cfg, data, args.holdout)
    if args.holdout:  # saved with the run, so evaluate finds the same split
        cfg.split.holdout = list(args.holdout)
    _, summary = train(cfg, data, split, run_dir=cfg.run_dir, resume=args.resume)
    summary["run_dir"] = str(cfg.run_dir)
    if args.json:
        _print_json(summary)
        return 0
    print(f"{cfg.run_dir}: {cfg.model.name} + {cfg.loss.name}, {summary['epochs']} epochs in "
          f"{summary['seconds']} s on {summary['train_episodes']} episodes; genres: "
          f"{', '.join(summary['genres'])}")
    if "test" in summary:
        print(f"test: {summary['test_episodes']} episodes of held-out programmes")
        print("\n".join(_metrics_lines(summary["test"])))
    return 0


def _run_config(run: Path):
    from training.genres.config import load_genre_config

    folder = run if run.is_dir() else run.parent
    file = folder / "config.yaml"
    if not file.exists():
        raise CommandError(f"{folder}: no config.yaml; is it a run of tvindex genres fit?",
                           "input")
    return load_genre_config(file)


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from training.genres.fit import load_model
    from training.genres.metrics import evaluate

    cfg = _run_config(args.run)
    model = load_model(args.run, cfg.device)
    data = _load_data(settings, model.profile_sets)
    idx = _split(cfg, data, args.holdout)["test"]
    if not len(idx):
        raise CommandError("no labelled episode to evaluate on: hold out programmes that "
                           "have genres (--holdout)", "input")
    report = evaluate(data.targets(model.genres, idx), model.probabilities(data, idx),
                      threshold=cfg.predict.threshold)
    report["programmes"] = sorted({data.programme_ids[i] for i in idx})
    if args.json:
        _print_json(report)
        return 0
    print(f"{args.run}: {len(idx)} episodes of {', '.join(report['programmes'])}")
    print("\n".join(_metrics_lines(report)))
    return 0


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from search.store import open_store
    from training.genres.fit import load_model
    from training.genres.predict import predict, summary

    cfg = _run_config(args.run)
    threshold = cfg.predict.threshold if args.threshold is None else args.threshold
    if not 0 < threshold < 1:
        raise CommandError(f"--threshold must be between 0 and 1, got {threshold}", "usage")
    model = load_model(args.run, cfg.device)
    data = _load_data(settings, model.profile_sets)
    episodes, programmes = predict(model, data, threshold=threshold,
                                   min_genres=cfg.predict.min_genres,
                                   everything=args.everything)
    if not args.dry_run:
        with open_store(settings) as store:
            store.write_predicted_genres(episodes, programmes, replace_all=True)
    out = summary(episodes, programmes)
    out["stored"] = not args.dry_run
    if args.json:
        _print_json(out)
        return 0
    for kind in ("programmes", "episodes"):
        for item, genres in out[kind].items():
            text = ", ".join(f"{g['genre']} {g['score']:.2f}" for g in genres)
            print(f"{kind[:-1]} {item}: {text}")
    if not episodes:
        print("nothing to predict: every indexed episode's programme has genres (use --all)")
    elif args.dry_run:
        print("(dry run: nothing stored)")
    return 0
