# The two entry points of the README. Each installs what it needs on a fresh machine (a venv in .venv,
# exact versions from constraints.txt), then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SEEDS ?= 1
# `make run PRECISION=auto`: bf16 where the CPU computes it natively (AVX-512 BF16, AMX), else fp32.
PRECISION ?=

.PHONY: run test docs docs-build smoke clean

EXTRAS := test,ray,export,parquet,mlflow,tensorboard,optim

# The main job needs the package alone; the tests need every optional extra (each integration is tested).
$(BIN)/mnistbench-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(BIN)/mnistbench-test-installed: $(BIN)/mnistbench-installed
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

# The main job: the seed notebook, every experiment of it, then its report.
run: $(BIN)/mnistbench-installed
	$(BIN)/mnistbench data fetch mnist
	$(BIN)/mnistbench run seed --seeds $(SEEDS) $(if $(PRECISION),--set precision=$(PRECISION))
	$(BIN)/mnistbench report seed

test: $(BIN)/mnistbench-test-installed
	$(BIN)/python -m pytest

# The documentation site (docs/, mkdocs.yml): `make docs` serves it at http://127.0.0.1:8000; `make docs-build`
# builds it with --strict (a broken link or reference fails), as CI does.
$(BIN)/mnistbench-docs-installed: $(BIN)/mnistbench-installed
	$(BIN)/pip install -q -c constraints.txt -e '.[docs]'
	touch $@

docs: $(BIN)/mnistbench-docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

docs-build: $(BIN)/mnistbench-docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) build *.egg-info
