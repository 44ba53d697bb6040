#!/usr/bin/env bash
# The GPU check, one command: bf16 training steps of a ~1B Llama at 32K and 64K with flash varlen,
# flash == SDPA-with-mask logits on a packed batch, VLLMEngine with guided JSON, a vLLM server with
# bench/llm.py against curator; a JSON report (docs/training.md, "The GPU check"). Under 8 minutes
# on one H100/H200; nothing from the internet (what the machine lacks comes from wheels/).
#
#   scripts/gpu_check.sh                     # on the GPU machine: report in .longweave/gpu_check.json
#   scripts/gpu_check.sh --dry-run           # anywhere: builds every command, checks wheels/, runs no CUDA
#   scripts/gpu_check.sh --collect           # with internet: download the wheels scripts/gpu_wheels.txt names
#
# The interpreter: $PY, else the repository's .venv, else python3 (the GPU image's, which holds torch).
# pip, in every check and in bench/llm.py's curator venv, installs offline from the carried wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${PY:-}" ]]; then :; elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
WHEELS="$PWD/wheels"
for ((i = 1; i <= $#; i++)); do
    if [[ "${!i}" == "--wheels" ]]; then j=$((i + 1)); WHEELS="${!j}"; fi
done
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELS" PIP_DISABLE_PIP_VERSION_CHECK=1
for arg in "$@"; do [[ "$arg" == "--collect" ]] && unset PIP_NO_INDEX PIP_FIND_LINKS; done
exec "$PY" scripts/gpu_check.py "$@"
