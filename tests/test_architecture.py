"""The floor plan holds: no import cycle between product modules, no import that breaks the
layer rules written in docs/architecture.md, and no product module over about 500 lines that
the document does not explain. Reads the code with ``ast``; imports nothing of it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tvindex", "indexer", "search", "webui", "training")
DOC = ROOT / "docs" / "architecture.md"
MAX_LINES = 500


def product_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The product modules ``name`` imports (any import statement, anywhere in the file),
    resolved to the longest known module name; ``from pkg import mod`` counts ``pkg.mod``."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                full = f"{module}.{alias.name}"
                add(full if full in known else module)
    return out


def layer_rules() -> tuple[list[tuple[str, tuple[str, ...]]], dict[str, set[str]]]:
    """(layer name, module prefixes) in document order, and the layers each may import."""
    block = re.search(r"```layers\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert block, "docs/architecture.md has no ```layers block"
    layers, allowed = [], {}
    for line in block.group(1).strip().splitlines():
        name, _, rest = line.partition(":")
        members, _, deps = rest.partition("->")
        layers.append((name.strip(), tuple(m.strip() for m in members.split(",") if m.strip())))
        allowed[name.strip()] = {d.strip() for d in deps.split(",") if d.strip()}
    return layers, allowed


def layer_of(module: str, layers) -> str:
    best, length = "", -1
    for name, prefixes in layers:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = name, len(p)
    # ``tvindex`` names the package's __init__ only; its submodules need their own entry.
    if best == "core" and length == len("tvindex") and module != "tvindex":
        return ""
    return best


MODULES = product_modules()
GRAPH = {m: imports_of(m, p, set(MODULES)) for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    layers, _ = layer_rules()
    missing = [m for m in MODULES if not layer_of(m, layers)]
    assert not missing, f"modules in no layer of docs/architecture.md: {missing}"


def test_imports_follow_the_layers():
    layers, allowed = layer_rules()
    bad = []
    for module, targets in sorted(GRAPH.items()):
        mine = layer_of(module, layers)
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if theirs != mine and theirs not in allowed[mine]:
                bad.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


def test_no_import_cycles():
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            # A package's __init__ importing its own submodules is not a cycle of design.
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_large_modules_are_explained():
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Large modules", 1)[1] if "## Large modules" in text else ""
    big = {str(p.relative_to(ROOT)): sum(1 for _ in p.open(encoding="utf-8"))
           for p in MODULES.values()}
    unexplained = [f"{f} ({n} lines)" for f, n in sorted(big.items())
                   if n > MAX_LINES and f"`{f}`" not in section]
    assert not unexplained, ("modules over 500 lines without a reason under 'Large modules' in "
                             f"docs/architecture.md: {unexplained}")


@pytest.mark.parametrize("registry", ["indexer.taggers.registry", "indexer.taggers.base",
                                      "indexer.taggers"])
def test_registries_import_no_implementation(registry):
    implementations = {"indexer.taggers.places365", "indexer.taggers.student",
                       "indexer.taggers.tflite_detector", "indexer.taggers.timm_classifier",
                       "indexer.taggers.yolo", "indexer.taggers.torch_tagger"}
    assert not GRAPH[registry] & implementations
