"""Behaviour before/after a refactor, in one run: index the demo with two revisions of the code
and compare what the command line answers.

For each side (``--base REV``, checked out into a temporary git worktree, and the working
tree) the script indexes ``demo/catalogue.csv`` into a fresh data dir with that side's own
code, then asks both the same questions through ``python -m tvindex.cli ... --json``:

- ``status`` (minus the wall-clock ``indexed_at``), ``labels`` with counts;
- the top 10 of at least 20 queries at each level (shot, episode, programme), built from the
  catalogue's own labels and titles: single labels, AND, OR, exclusions, programme filters,
  dates, free words;
- ``similar`` for every programme and episode, a sample of shots and one picture;
- ``vectors status`` (minus ``dir`` and ``synced_at``);
- ``report --json`` of the catalogue against itself (minus the output paths).

It prints one JSON object: per section, whether both sides answered the same, and the first
differences. Exit status 0 when every section is identical, 1 otherwise. Needs the shared kit
(``TVINDEX_SHARED_DIR``) like the demo. Typical use, before a refactor lands::

    python bench/refactor_equivalence.py --base origin/main
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VOLATILE = {"indexed_at", "synced_at", "dir", "location", "out", "html", "json", "generated_at", "seconds",
            "elapsed_s", "frames_per_s", "wall_s"}


def _cli(side: Path, data_dir: Path, *args: str, check: bool = True) -> Any:
    env = dict(os.environ, PYTHONPATH=str(side))
    cmd = [sys.executable, "-m", "tvindex.cli", "--config", "demo/config.yaml", *args,
           "--data-dir", str(data_dir)]
    proc = subprocess.run(cmd, cwd=side, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if check:
            raise SystemExit(f"{side.name}: {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stderr[-2000:]}")
        return {"exit": proc.returncode, "stderr": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def queries(labels: list[dict[str, Any]], programmes: list[str]) -> list[str]:
    """At least 20 queries from the catalogue's own vocabulary (labels found in some shot)."""
    present = sorted((lab for lab in labels if lab["shots"] > 0),
                     key=lambda lab: (-lab["shots"], lab["label_set"], lab["name"]))
    objects = [lab["name"] for lab in present if lab["label_set"] == "coco80"]
    others = [lab for lab in present if lab["label_set"] != "coco80"]

    def q(name: str) -> str:
        return f'"{name}"' if " " in name or "," in name else name

    out = [f"object:{q(n)}" for n in objects[:6]]
    out += [f"{lab['label_set']}:{q(lab['name'])}" for lab in others[:6]]
    out += [f"scene:{q(lab['name'])}" for lab in others[:2]]
    for a, b in itertools.pairwise(objects[:4]):
        out += [f"object:{q(a)} object:{q(b)}", f"object:{q(a)} OR object:{q(b)}",
                f"object:{q(a)} -object:{q(b)}"]
    out += [f'object:person programme:"{t}"' for t in programmes[:3]]
    out += ["object:person after:2020-01-01", "object:car before:2030-01-01", "person",
            "bicycle car", programmes[0] if programmes else "bici"]
    return out


def snapshot(side: Path, data_dir: Path, image: Path | None) -> dict[str, Any]:
    _cli(side, data_dir, "index", "demo/catalogue.csv", "--no-progress")
    snap: dict[str, Any] = {}
    snap["status"] = _strip(_cli(side, data_dir, "status", "--json"))
    labels = _cli(side, data_dir, "labels", "--json")
    snap["labels"] = labels
    progs = _cli(side, data_dir, "search", "object:person", "--level", "programme",
                 "--limit", "50", "--json")
    titles = sorted({h["programme_title"] for h in progs["hits"]})
    qs = queries(labels, titles)
    snap["queries"] = qs
    for level in ("shot", "episode", "programme"):
        snap[f"search_{level}"] = {
            q: _cli(side, data_dir, "search", q, "--level", level, "--limit", "10", "--json",
                    check=False) for q in qs}
    episodes = [e["id"] for e in snap["status"]]
    programmes = sorted({e["programme_id"] for e in snap["status"]})
    shots = [h["id"] for h in _cli(side, data_dir, "search", "object:person", "--level", "shot",
                                   "--limit", "6", "--json")["hits"]]
    snap["similar"] = {}
    for kind, ids in (("programme", programmes), ("episode", episodes), ("shot", shots)):
        for i in ids:
            snap["similar"][f"{kind} {i}"] = _cli(side, data_dir, "similar", kind, i,
                                                  "--limit", "5", "--json", check=False)
    if image is not None:
        snap["similar"]["image"] = _cli(side, data_dir, "similar", "image", str(image),
                                        "--limit", "5", "--json", check=False)
    snap["vectors_status"] = _strip(_cli(side, data_dir, "vectors", "status", "--json"))
    with tempfile.TemporaryDirectory() as out:
        snap["report"] = _strip(_cli(side, data_dir, "report", "--out", out, "--reference",
                                     str(data_dir), "--json"))
    return snap


def first_differences(a: Any, b: Any, path: str = "", limit: int = 5) -> list[str]:
    if type(a) is not type(b):
        return [f"{path}: {a!r:.120} != {b!r:.120}"]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only on one side")
            else:
                out += first_differences(a[k], b[k], f"{path}.{k}", limit)
            if len(out) >= limit:
                break
        return out[:limit]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += first_differences(x, y, f"{path}[{i}]", limit)
            if len(out) >= limit:
                break
        return out[:limit]
    return [] if a == b else [f"{path}: {a!r:.120} != {b!r:.120}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD", help="the revision to compare with (git rev)")
    ap.add_argument("--keep", type=Path, help="keep both snapshots as JSON in this folder")
    args = ap.parse_args()
    shared = os.environ.get("TVINDEX_SHARED_DIR")
    image = Path(shared) / "media/images/dog.jpg" if shared else None
    with tempfile.TemporaryDirectory(prefix="tvindex-eq-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(base), args.base],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            before = snapshot(base, Path(tmp) / "data-base", image)
            after = snapshot(ROOT, Path(tmp) / "data-head", image)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           capture_output=True, check=False)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        (args.keep / "before.json").write_text(json.dumps(before, indent=1))
        (args.keep / "after.json").write_text(json.dumps(after, indent=1))
    sections = {}
    for key in before:
        diffs = first_differences(before[key], after.get(key))
        sections[key] = {"identical": not diffs, "differences": diffs}
    counts = {"queries_per_level": len(before["queries"]),
              "similar_answers": len(before["similar"])}
    result = {"base": args.base, "identical": all(s["identical"] for s in sections.values()),
              **counts, "sections": sections}
    print(json.dumps(result, indent=1))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
