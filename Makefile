# Two set-up commands: `make serve` and `make test` (Python 3.11 and make are all you need).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
# pytest-xdist workers (the suite is sized for 2 cores; each worker that runs Ray tests starts
# its own local Ray cluster, see tests/conftest.py ray_serve)
TEST_WORKERS ?= 2

.PHONY: serve test venv clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	@echo "Dehaze Serve on http://127.0.0.1:8000  (API docs: http://127.0.0.1:8000/docs)"
	$(VENV)/bin/dehaze serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache
