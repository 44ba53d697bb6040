#!/usr/bin/env bash
# Type checking (mypy) of the installed package layout: the folders install as longweave.<folder>
# (setup.py), which mypy cannot see from the source tree, so a tree of links in .longweave/typecheck
# gives it the package as installed. generators/ and clients/ are checked with --strict's flags,
# service/ and trainer/ with mypy's defaults (pyproject.toml [tool.mypy] and its overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
root=.longweave/typecheck
mkdir -p "$root/longweave"
for d in generators service trainer clients experiments; do ln -sfn "$PWD/$d" "$root/longweave/$d"; done
export MYPYPATH=$root
"$PY" -m mypy --cache-dir .longweave/mypy-cache --warn-unused-ignores --warn-redundant-casts \
    -p longweave.generators -p longweave.clients -p longweave.service -p longweave.trainer -p longweave.experiments
