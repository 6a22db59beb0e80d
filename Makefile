# All set-up goes through these targets; the venv is created when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test demo bench clean lab

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

test: venv
	WANDB_MODE=offline WANDB_SILENT=true $(PY) -m pytest -q

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

bench: venv
	$(PY) benchmarks/bench_optimizer_step.py
	$(PY) benchmarks/bench_training.py

clean:
	rm -rf runs wandb .pytest_cache
