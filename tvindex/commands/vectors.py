"""``tvindex vectors {status,sync,rebuild}``: the FAISS indexes of the catalogue's embeddings.

``tvindex index`` syncs them after every run and the web server before answering from them,
so ``rebuild`` is for repairs: after deleting the folder, changing ``vectors.*`` settings, or
restoring the store from a backup.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vectors", help="status, sync or rebuild the vector indexes (FAISS)")
    p.add_argument("action", choices=["status", "sync", "rebuild"],
                   help="status: counts and freshness; sync: bring up to date with the store; "
                        "rebuild: remake from the store")
    p.add_argument("--data-dir", type=Path, help="where the store lives (paths.data_dir)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})


def run(args: argparse.Namespace, settings: Settings) -> int:
    from search.store import open_store
    from search.vector_catalogue import VectorCatalogue

    with open_store(settings) as store:
        vectors = VectorCatalogue.from_settings(store, settings)
        if args.action == "status":
            out = vectors.status()
        else:
            report = vectors.rebuild() if args.action == "rebuild" else vectors.sync()
            out = report.to_dict() | {"dir": str(vectors.dir)}
    if args.json:
        print(json.dumps(out, indent=1))
    elif args.action == "status":
        print(f"{out['dir']}: model {out['model'] or '(none)'}, dim {out['dim']}, "
              f"{out['episodes']} episodes, synced {out['synced_at'] or 'never'}, "
              f"{'current' if out['current'] else 'STALE (run: tvindex vectors sync)'}")
        for level, info in out["levels"].items():
            print(f"  {level:<10} {info['count']:>9} vectors  {info['kind']}")
    else:
        counts = ", ".join(f"{n} {level}s" for level, n in out["counts"].items())
        what = "rebuilt" if out["rebuilt"] else (
            f"synced ({out['updated_episodes']} episodes updated, "
            f"{out['removed_episodes']} removed)")
        print(f"{what}: {counts} in {out['seconds']} s -> {out['dir']}")
    return 0
