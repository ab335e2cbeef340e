# Set-up and everyday commands. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
# where torch comes from: pip's own configuration by default; on Linux, PyPI's torch is
# the CUDA build, so TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
# asks PyTorch's index for the CPU one
TORCH_INDEX ?=
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install demo test test-all bench anchors check-torch lint clean analyses-quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so the package's torch range installs nothing more (which build
# comes depends on the index: see TORCH_INDEX above).
install: $(BIN)/python
	$(PIP) install "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(PIP) install -e ".[dev]"
	@$(MAKE) --no-print-directory check-torch

check-torch:
	@$(BIN)/python -c "import torch, sys; v = torch.__version__; \
	ok = v.split('+')[0] == '$(TORCH_SPEC)'.split('==')[-1]; \
	print(f'torch {v}'); sys.exit(0 if ok else f'expected $(TORCH_SPEC), found torch {v}: a dependency replaced it')"

# The main job: train an MLP on scikit-learn's bundled digits with DCAO while recording
# the Hessian spectrum every epoch, plot the eigenvalue-density evolution, and probe
# the last checkpoint. DCAO probes every 10 steps here (default 200) so that it adapts
# within this short run.
DEMO_RUN ?= runs/demo.h5
demo: install
	$(BIN)/spectra train --optimizer dcao --opt-arg period=10 --opt-arg warmup_probes=3 \
		--epochs 12 --out $(DEMO_RUN) --overwrite
	$(BIN)/spectra plot evolution $(DEMO_RUN) -o runs/demo-evolution.png
	$(BIN)/spectra probe --checkpoint runs/demo_ckpt/dcao/checkpoint-epoch0012.pt

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ""

# Anchors for the benchmark. backpack-for-pytorch declares torchvision, which would
# replace the CPU torch with a CUDA one, so it and curvlinops go in with --no-deps.
anchors: install
	$(PIP) install -e ".[bench]"
	$(PIP) install --no-deps curvlinops-for-pytorch backpack-for-pytorch
	@$(MAKE) --no-print-directory check-torch

# The core benchmark (analyses/bench_core/); BENCH_ARGS=--quick for a shorter run.
BENCH_ARGS ?=
bench: anchors
	$(BIN)/python -m analyses.bench_core $(BENCH_ARGS)

# Every issue-12 study in its quick mode (each under 2 minutes; results go to a temporary
# folder, never over the committed analyses/results).
ANALYSES ?= edge_of_stability synthetic classification density_evolution spectra_cost dcao_study bounded_density
analyses-quick: install
	@for study in $(ANALYSES); do \
		echo "== python -m analyses.$$study --quick"; \
		MPLBACKEND=Agg $(BIN)/python -m analyses.$$study --quick || exit 1; \
	done

lint: install
	$(BIN)/python -m ruff check spectra optim cli tests analyses

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
