# Two entry points (see README): `make book` runs the main job, `make test` runs the tests.
# Each creates .venv on first use and installs what it needs into it.

PYTHON ?= python3
VENV ?= .venv
# A known torch build; override for your platform, e.g. TORCH="torch torchvision" or a CPU index.
TORCH ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: book params test clean data

# Fashion-MNIST offline: Debian's package when we may install it; otherwise torchvision downloads it
# on first use (or set VITCF_FASHION_MNIST to a folder holding the four IDX files).
data:
	@if [ ! -d $(FMNIST) ] && [ -z "$$VITCF_FASHION_MNIST" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev,book]'
	touch $@

## The main job: parameter accounting and the book (the study's runs join with the engine).
book: $(STAMP) data
	$(VENV)/bin/vitcf params
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "open _build/html/index.html"

params: $(STAMP)
	$(VENV)/bin/vitcf params

test: $(STAMP) data
	$(PY) -m pytest -n 2

clean:
	rm -rf _build
