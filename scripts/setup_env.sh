#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs tvindex into it, editable.
# The venv lives outside the checkout so a fresh clone (CI) reuses the 5 GB of PyTorch already
# installed; a stamp holds the hash of pyproject.toml, so a dependency change reinstalls.
# Usage: source scripts/setup_env.sh   (exports TVINDEX_PY and puts the venv on PATH)
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_hash="$(sha256sum "$_root/pyproject.toml" | cut -c1-12)"
_base="${TVINDEX_VENV_ROOT:-$HOME/.cache/tvindex}"
_venv="${TVINDEX_VENV:-$_base/venv}"
if [ ! -x "$_venv/bin/python" ]; then
    echo "setup: creating virtual environment $_venv (the first run installs ~6 GB; later runs reuse it)" >&2
    mkdir -p "$(dirname "$_venv")"
    python3 -m venv "$_venv"
    "$_venv/bin/python" -m pip install -q --upgrade pip
fi
if [ "$(cat "$_venv/.tvindex-deps" 2>/dev/null)" != "$_hash" ]; then
    echo "setup: installing tvindex and its dependencies into $_venv" >&2
    # torch/torchvision are pinned in pyproject.toml; pip takes them from this machine's disk.
    "$_venv/bin/python" -m pip install -q -e "$_root[test]"
    echo "$_hash" > "$_venv/.tvindex-deps"
else
    # Point the (shared) venv at this checkout; dependencies are already satisfied.
    "$_venv/bin/python" -m pip install -q --no-deps -e "$_root" >/dev/null
fi
export PATH="$_venv/bin:$PATH"
export TVINDEX_PY="$_venv/bin/python"
# Real weights and media live beside the project, never inside it.
if [ -z "${TVINDEX_SHARED_DIR:-}" ] && [ -d "$_root/../shared" ]; then
    export TVINDEX_SHARED_DIR="$(cd "$_root/../shared" && pwd)"
fi
if [ -z "${TVINDEX_MODEL_DIR:-}" ] && [ -n "${TVINDEX_SHARED_DIR:-}" ]; then
    export TVINDEX_MODEL_DIR="$TVINDEX_SHARED_DIR/models"
fi
export YOLO_OFFLINE=1
set +euo pipefail
