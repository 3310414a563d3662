"""``tvindex similar {programme,episode,shot,image} ID_OR_FILE``: recommendations and query by
example from the command line (the same engine as the API: ``search/recommend.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search.engine import MAX_LIMIT
from tvindex.commands._common import (
    CommandError,
    add_data_dir,
    add_json,
    command_parser,
    int_in,
    require_catalogue,
)
from tvindex.core.limits import DEFAULT_LIMIT
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "similar", help="similar programmes/episodes/shots, or shots like an image",
        description="Recommendations from the catalogue (the same engine as the API): the "
                    "programmes, episodes or shots most like one of them, or the shots most "
                    "like a picture (query by example; builds the embedding tagger).",
        examples=["tvindex similar programme la-placa --data-dir var/demo",
                  "tvindex similar shot bici-01@2 --limit 5 --json",
                  "tvindex similar image dog.jpg"])
    p.add_argument("kind", choices=["programme", "episode", "shot", "image"],
                   help="what to find similar items to (image: shots like a picture file)")
    p.add_argument("target", help="programme or episode id, shot id EPISODE@INDEX, or an image file")
    p.add_argument("--limit", type=int_in(1, MAX_LIMIT), default=DEFAULT_LIMIT, metavar="N",
                   help=f"items to show, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")
    p.add_argument("--min-similarity", type=float, metavar="S",
                   help="image: shots less similar than S are no match (pictures."
                        "min_similarity; default 0.5 for the offline embedder)")
    add_data_dir(p)
    add_json(p, "print the items as JSON")
    p.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir,
                                                 "pictures.min_similarity": a.min_similarity})


def _read_image(path: str, settings: Settings):
    """The picture as the API reads an upload (``tvindex.core.images.decode_image``: the same
    formats, pixel bound, orientation, transparency and size), so the command line and
    ``POST /api/v1/similar`` answer alike."""
    from tvindex.core.images import ImageError, decode_image
    from tvindex.errors import UserError

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return decode_image(data, settings.server.max_upload_pixels).pixels
    except ImageError as exc:
        raise UserError(f"{path}: {exc}") from None


def _build_embedder(settings: Settings):
    """The embedding tagger alone, for ``similar image`` (no other network is loaded)."""
    from indexer.embedder import build_embedder

    return build_embedder(settings)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from search.recommend import Recommender, RecommendError, apply_floor
    from search.store import open_store
    from search.vector_catalogue import VectorCatalogue
    from tvindex.commands.search import print_hits
    from tvindex.core.store import NotFound
    from tvindex.errors import UserError

    require_catalogue(settings)
    with open_store(settings) as store:
        rec = Recommender.from_settings(store, settings.recommend,
                                        VectorCatalogue.from_settings(store, settings),
                                        embedder_provider=lambda: _build_embedder(settings))
        try:
            if args.kind == "programme":
                items = rec.similar_programmes(args.target, args.limit)
            elif args.kind == "episode":
                items = rec.similar_episodes(args.target, args.limit)
            elif args.kind == "shot":
                items = rec.similar_shots(args.target, args.limit)
            else:
                vector = rec.embed_image(_read_image(args.target, settings))
                floor = settings.pictures.min_similarity
                items, best = apply_floor(rec.shots_like(vector, args.limit), floor)
                if best is not None and not items:
                    print(f"tvindex: no close match: the nearest shot's similarity is "
                          f"{best:.2f}, under pictures.min_similarity {floor:.2f}",
                          file=sys.stderr)
        except NotFound as exc:
            raise CommandError(str(exc), "not_found") from None
        except (RecommendError, ValueError) as exc:
            raise UserError(str(exc)) from None
    if args.kind in ("shot", "image"):
        if args.json:
            print(json.dumps([h.to_dict() for h in items], indent=1))
        else:
            print_hits(items)
        return 0
    if args.json:
        print(json.dumps(items, indent=1))
        return 0
    for n, item in enumerate(items, 1):
        parts = "/".join("-" if v is None else f"{v:.2f}"
                         for v in (item["embedding_similarity"], item["label_similarity"]))
        print(f"{n:3d}. {item['similarity']:.3f}  {item['id']}  {item['title']}  "
              f"(embedding/labels {parts})")
    return 0
