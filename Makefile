# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv on a fresh machine and installs what it needs into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Main job: CoMM vs Cross on bimodal Trifeature, pre-trained, probed, R/U/S table + bar chart.
demo: $(VENV)/.installed
	$(PY) -m launch.demo --out outputs/demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# Two xdist workers (CI has 2 cores); files stay whole on one worker so jit caches are shared.
# pytest exits 5 when it collected no test: that is a failure here, like any other non-zero code.
test: lint
	@$(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
