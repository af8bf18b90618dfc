# Two commands on a fresh machine: `make run` and `make test` (each creates/refreshes .venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LOOPS := $(VENV)/.loops-stamp
SAMPLES := resources/samples

.PHONY: run test bench bench-gpu clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "RoIScope needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# Compile roi_core's Numba loops now (cached beside the module, in roi_core/__pycache__), and again
# when they change, so that no user action waits seconds for it; a later process loads them.
$(LOOPS): $(STAMP) roi_core/_cpu_kernels.py roi_core/_cpu_path.py
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -c 'from roi_core import _cpu_path; _cpu_path.warm()'
	@touch $(LOOPS)

run: $(LOOPS)
	@$(PY) -m app.gui.preflight
	$(PY) -m app $(SAMPLES)

# Two workers; the Ray tests share one (one local Ray instance: xdist_group "ray"). `pytest` alone runs serially.
test: $(LOOPS)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -n 2 --dist loadgroup

bench: $(LOOPS)
	QT_QPA_PLATFORM=offscreen $(PY) -m tests.bench

bench-gpu: $(STAMP)
	$(PY) -m tests.bench.gpu_bench

clean:
	rm -rf $(VENV) build *.egg-info
