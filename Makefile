# Fresh-machine entry points: `make demo` and `make test` create .venv on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test system-deps clean-venv

# Re-installs only when pyproject.toml or the cloning-test script changes.
$(STAMP): pyproject.toml scripts/cloning-test-deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned: this machine serves a CPU build of 2.13.0 from disk; a bare `torch` pulls GBs of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[embedded,runtimes,record,studio,dev,pocket]'
	# f5-tts and f5-tts-mlx for the cloning-backend tests (random weights), beside the CPU torch.
	bash scripts/cloning-test-deps.sh $(PY)
	# The lowest transformers release we support, for tests/models/test_transformers_range.py.
	bash scripts/transformers-range.sh $(PY)
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

demo: $(STAMP) system-deps
	$(PY) main.py demo

test: $(STAMP) system-deps
	$(VENV)/bin/pytest -q

clean-venv:
	rm -rf $(VENV)
