# rna_hpc developer commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
DEMO ?= outputs/demo
# Hydra's launcher test suites (LauncherTestSuite, IntegrationTestSuite) run in a pytest session of their own, as in
# Hydra's plugin repositories: they rely on Hydra's process-wide state being fresh
CONTRACT_TESTS := tests/integration/test_hydra_launcher_contract.py tests/slurm/test_hydra_launcher_contract_slurm.py

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# Installed with bytecode: where PYTHONDONTWRITEBYTECODE is set (containers, CI), a venv without it recompiles
# torch, Lightning and their imports in every process, about 10 s more for each training job
install: $(VENV)/.installed ## Create the venv: torch 2.13.0 (CPU) first, then the locked set
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q torch==2.13.0 uv==0.13.9
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -r requirements.lock -e ".[dvc]"
	$(PY) -c "import torch, sys; sys.exit(0 if '+cpu' in torch.__version__ or torch.cuda.is_available() else 'a CUDA torch build was pulled in')"
	touch $@

demo: install ## The main job: train on the embedded synthetic set, predict PDB files, evaluate TM-score
	$(PY) -m rna_hpc.prepare +export_dir=$(DEMO)/data
	$(PY) -m rna_hpc.train hydra.run.dir=$(DEMO)/train
	$(PY) -m rna_hpc.predict ckpt=$(DEMO)/train/ckpt/best.ckpt input=$(DEMO)/data/val_sequences.csv \
		hydra.run.dir=$(DEMO)/predict
	$(PY) -m rna_hpc.evaluate predictions=$(DEMO)/predict/submission.csv labels=$(DEMO)/data/val_labels.csv \
		hydra.run.dir=$(DEMO)/evaluate
	@echo
	@echo "checkpoint:       $(DEMO)/train/ckpt/best.ckpt (consolidated: outputs/shared/default/train/0/)"
	@echo "PDB files:        $(DEMO)/predict/pdb/"
	@echo "TM-score report:  $(DEMO)/evaluate/report.md ($(DEMO)/evaluate/evaluation.json)"

repro: install ## The DVC pipeline, data -> evaluation (docs/lineage.md); stages run with the venv's python
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc repro
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc metrics show

params: install ## Recompose params.yaml from conf/ as `dvc exp run` does (commit it after editing conf/)
	env -u RNA_HPC_DATA $(PY) -c "import os; from dvc.utils.hydra import compose_and_dump as c; \
		c('params.yaml', os.path.abspath('conf'), None, 'pipeline', os.path.abspath('.'), [])"

test: install db-up ## The whole test suite (unit, integration, real data, real Slurm: starts the local cluster)
	SLURM_LOCAL_NODES=2 SLURM_LOCAL_GPUS=2 bash slurm/start.sh
	$(PYTEST) tests -m "not gpu" $(foreach t,$(CONTRACT_TESTS),--ignore=$(t))
	$(PYTEST) $(CONTRACT_TESTS)

test-fast: install db-up ## Everything but the Slurm layer, the slow and the GPU tests
	$(PYTEST) tests -m "not slurm and not slow and not gpu"

test-slurm: install slurm-up db-up ## Only the tests against the real local Slurm
	$(PYTEST) tests -m "slurm and not gpu" --ignore=tests/slurm/test_hydra_launcher_contract_slurm.py
	$(PYTEST) tests/slurm/test_hydra_launcher_contract_slurm.py

test-gpu: install ## Only the tests that need a real CUDA GPU (benchmarks/gpu_check.sh runs them on a GPU machine)
	$(PYTEST) tests -m gpu

lint: install ## ruff lint + format check + the import contracts (pyproject's [tool.importlinter])
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: install ## ruff fix + format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

slurm-up: ## Start the local Slurm cluster (root; 2 nodes on this host)
	SLURM_LOCAL_NODES=2 SLURM_LOCAL_GPUS=2 bash slurm/start.sh

slurm-down: ## Stop exactly the daemons slurm-up started
	bash slurm/stop.sh

db-up: ## Start the local PostgreSQL server for search storage (root); prints its URL
	bash db/start.sh

db-down: ## Stop exactly the PostgreSQL server db-up started
	bash db/stop.sh

bench: install ## Print the benchmark figures (minutes)
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lock: ## Recompile requirements.lock from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra dvc -p 3.11 --find-links "$${PIP_FIND_LINKS:-}" --no-emit-package torch -o requirements.lock

clean: ## Remove outputs and caches
	rm -rf outputs multirun .pytest_cache .ruff_cache

.PHONY: help install demo repro params test test-fast test-gpu test-slurm lint format slurm-up slurm-down db-up db-down bench lock clean
