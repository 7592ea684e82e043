# Two commands on a fresh machine:
#   make test   — set up .venv (pinned, torch 2.13.0 CPU), build asd._C, ruff + mypy, start the local SLURM cluster, run all tests
#   make demo   — same set-up, then a reduced evaluation grid on the embedded testbed (configs/demo_pipeline.yaml)
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.stamp-requirements
DEV_STAMP := $(VENV)/.stamp-editable
# one CMake build folder for the editable install and `make build` (the second build is then incremental)
CMAKE_DIR := $(CURDIR)/build/temp/cmake
PYTEST_ARGS ?=
# pytest-xdist workers (tests/conftest.py hands out a module at a time; the SLURM modules run as one unit).
# why 3 on 2 cores: the tests that wait (on SLURM, subprocesses, the sandbox) leave a core idle; one torch
# thread each. The whole suite here: 1,091 s with 3 workers against 1,271 s with 2 (docs/architecture.md)
PYTEST_WORKERS ?= 3
# published data no package ships (docs/data.md): the real-file tests read it from here when it exists
ASD_TRUTHFULQA_CSV ?= $(wildcard $(abspath ../shared/data/truthfulqa/TruthfulQA.csv))
export ASD_TRUTHFULQA_CSV
# Cached bytecode for everything make runs. With PYTHONDONTWRITEBYTECODE set (this workplace's shells set
# it) every Python process compiles the package again, and every pytest process rewrites the asserts of all the
# test modules again: one collection of the suite took 15.4 s against 8.7 s with the cache, and the suite is
# collected by each xdist worker and by 8 subprocesses of tests/test_collection.py (docs/architecture.md).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup build lint test test-fast demo bench slurm-up tp-check clean

# --no-compile: pip would compile every module of every package (all of torch and transformers: 113 s of a
# fresh install here, 33 s without); Python compiles the modules a process imports, once, on first use
# (bytecode is written: see PYTHONDONTWRITEBYTECODE above)
$(STAMP): requirements/base.txt requirements/test.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile -r requirements/test.txt
	touch $@

# editable install (the asd console script); builds the extension once
$(DEV_STAMP): $(STAMP) pyproject.toml setup.py
	ASD_BUILD_DIR=$(CMAKE_DIR) $(BIN)/pip install -q --no-build-isolation --no-deps -e .
	touch $@

setup: $(DEV_STAMP)

# incremental rebuild of asd._C into the source tree (CMake build folder under build/)
build: $(DEV_STAMP)
	mkdir -p build && flock build/.lock env ASD_BUILD_DIR=$(CMAKE_DIR) $(BIN)/python setup.py -q build_ext --inplace --build-temp build/temp

slurm-up:
	bash scripts/slurm_up.sh

# the gates: ruff (lint + format check) and mypy over asd/, configured in pyproject.toml
lint: $(DEV_STAMP)
	$(BIN)/ruff check asd
	$(BIN)/ruff format --check asd
	$(BIN)/mypy

test: build lint slurm-up
	$(BIN)/python -m pytest tests -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-fast: build
	$(BIN)/python -m pytest tests -n $(PYTEST_WORKERS) -m "not slow and not slurm" $(PYTEST_ARGS)

# the reduced evaluation grid on the testbed (every policy, 4 datasets, λ ∈ {1, ∞}; live progress with ETA),
# then asd analyze / asd report of its run folder (runs/demo-evaluation); prints where the report is
demo: build
	$(BIN)/asd run --config configs/demo_pipeline.yaml

# the tensor-parallel decoder (asd/models/tensor_parallel.py) on 2 CPU ranks (gloo) == one device; scripts/README.md
tp-check: $(DEV_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/torchrun --standalone --nproc_per_node 2 -m asd.models.tensor_parallel --check --device cpu --size ''

bench: build
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-json=results/benchmarks/latest.json

clean:
	rm -rf build asd/_C*.so *.egg-info
