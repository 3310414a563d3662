"""``tvindex vectors {status,sync,rebuild}``: the FAISS indexes of the catalogue's embeddings.

``tvindex index`` syncs them after every run and the web server before answering from them,
so ``rebuild`` is for repairs: after deleting the folder, changing ``vectors.*`` settings, or
restoring the store from a backup.

Exit status: 0; ``status`` exits 1 when a level is damaged (a file missing, truncated or
overwritten, or ``state.json`` unreadable: see ``search/vector_catalogue.py``), and says why;
``sync`` rebuilds the damaged levels from the store (and says which), ``rebuild`` all of them.
"""

from __future__ import annotations

import argparse
import json

from tvindex.commands._common import add_data_dir, add_json, command_parser, require_catalogue
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "vectors", help="status, sync or rebuild the vector indexes (FAISS)",
        description="The FAISS indexes of the catalogue's embeddings (similar shots, query by "
                    "example). tvindex index and the web server keep them in step; status "
                    "exits 1 when a level is damaged, sync repairs it, rebuild remakes all.",
        examples=["tvindex vectors status --data-dir var/demo",
                  "tvindex vectors sync          # after a damaged level or a restore",
                  "tvindex vectors rebuild --json"])
    p.add_argument("action", choices=["status", "sync", "rebuild"],
                   help="status: counts and freshness; sync: bring up to date with the store; "
                        "rebuild: remake from the store")
    p.add_argument("--visual", action="store_true",
                   help="the CLIP indexes of visual: terms (the openclip tagger; "
                        "<vectors>/visual) instead")
    add_data_dir(p)
    add_json(p, "print the status or the sync report as JSON")
    p.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})


def run(args: argparse.Namespace, settings: Settings) -> int:
    from search.store import open_store
    from search.vector_catalogue import VectorCatalogue

    if args.action == "status":
        require_catalogue(settings)
    with open_store(settings) as store:
        vectors = VectorCatalogue.from_settings(store, settings)
        if args.visual:
            from search.visual_vectors import visual_catalogue

            vectors = visual_catalogue(store, vectors)
        if args.action != "status" and store.read_only:
            from tvindex.core.store import CatalogueReadOnly

            raise CatalogueReadOnly(
                f"{vectors.dir}: the catalogue is read-only here; vectors {args.action} needs "
                "a writable data directory (--data-dir or paths.data_dir)")
        if args.action == "status":
            out = vectors.status()
        else:
            report = vectors.rebuild() if args.action == "rebuild" else vectors.sync()
            out = report.to_dict() | {"dir": str(vectors.dir)}
    damaged = args.action == "status" and bool(out["damaged"])
    if args.json:
        print(json.dumps(out, indent=1))
    elif args.action == "status":
        freshness = ("DAMAGED (run: tvindex vectors sync)" if damaged else
                     "current" if out["current"] else "STALE (run: tvindex vectors sync)")
        print(f"{out['dir']}: model {out['model'] or '(none)'}, dim {out['dim']}, "
              f"{out['episodes']} episodes, synced {out['synced_at'] or 'never'}, {freshness}")
        for level, info in out["levels"].items():
            if info["status"] == "damaged":
                print(f"  {level:<10} damaged: {info['reason']}")
            else:
                note = "" if info["status"] == "ok" else f"  ({info['status']})"
                print(f"  {level:<10} {info['count']:>9} vectors  {info['kind']}{note}")
    else:
        counts = ", ".join(f"{n} {level}s" for level, n in out["counts"].items())
        what = "rebuilt" if out["rebuilt"] else (
            f"synced ({out['updated_episodes']} episodes updated, "
            f"{out['removed_episodes']} removed)")
        print(f"{what}: {counts} in {out['seconds']} s -> {out['dir']}")
        for level, why in out["repaired"].items():
            print(f"  repaired the damaged {level} index ({why})")
    return 1 if damaged else 0
