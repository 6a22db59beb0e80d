# All set-up goes through these targets; the venv is created when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test check demo bench clean lab gpu-wheels regenerate

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# the whole suite, its test files spread over TEST_WORKERS processes (pytest-xdist; one file stays on one
# worker, so module fixtures are built once); the 15 slowest tests are listed at the end
TEST_WORKERS ?= 2
PYTEST := WANDB_MODE=offline WANDB_SILENT=true $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: venv
	$(PYTEST) --durations=15

# the edit loop: everything but the tests marked slow (subprocess training, notebooks, browser, clusters)
check: venv
	$(PYTEST) -m "not slow" --durations=5

# the demo experiment on scikit-learn's digits (embedded): 4 optimizers x 3 seeds, then its report
demo: venv
	$(VENV)/bin/lookahead-fastai run demo --scale cpu --seeds 3
	$(VENV)/bin/lookahead-fastai report demo

# JupyterLab on notebooks/, this venv registered as the kernel the notebooks name ("Python (lookahead-fastai)")
LAB_DIR ?= notebooks
LAB_ARGS ?=
lab: venv
	$(PY) -m ipykernel install --sys-prefix --name lookahead-fastai --display-name "Python (lookahead-fastai)" >/dev/null
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(LAB_DIR) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# everything generated (notebooks, environment.yml, README tables, reports from reports/data/*.jsonl);
# tests/test_generated.py fails when a committed copy differs from what this writes
regenerate: venv
	$(PY) -m lookahead_fastai.regenerate

bench: venv
	$(PY) benchmarks/bench_optimizer_step.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_loader.py

clean:
	rm -rf runs wandb .pytest_cache

# What benchmarks/gpu/run.sh needs on a lent GPU machine (Python 3.12, torch 2.11, no network), into
# ignored folders to carry there: the wheels it lacks (benchmarks/gpu/wheels.txt) in .whl/, the
# CIFAR-10 subset in .gpu-data/; then the size of everything that would travel (limit 64 MiB).
GPU_DATA ?= ../shared/data
gpu-wheels:
	rm -rf .whl .gpu-data
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .whl -r benchmarks/gpu/wheels.txt
	mkdir -p .gpu-data && cp -r $(GPU_DATA)/cifar10_subset .gpu-data/
	@echo "$$(ls .whl/*.whl | wc -l) wheels, $$(du -cb .whl/*.whl | tail -1 | cut -f1) bytes in .whl/"
	python3 benchmarks/gpu/travel_size.py .whl .gpu-data
