# Two commands on a fresh machine: `make run` and `make test` (each creates/refreshes .venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAMPLES := resources/samples

.PHONY: run test bench bench-gpu clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "RoIScope needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	@$(PY) -m app.gui.preflight
	$(PY) -m app $(SAMPLES)

# Two workers; the Ray tests share one (one local Ray instance: xdist_group "ray"). `pytest` alone runs serially.
test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -n 2 --dist loadgroup

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m tests.bench

bench-gpu: $(STAMP)
	$(PY) -m tests.bench.gpu_bench

clean:
	rm -rf $(VENV) build *.egg-info
