# raymix: the README's two commands are `make demo` and `make test`; both install from nothing.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install install-into browser demo test test-unit bench lint clean

install: $(STAMP)

# Without an NVIDIA GPU, DeepSpeed runs on its CPU accelerator: build its shared-memory
# communication op at install (--no-cache-dir: a cached wheel would come without it) instead of
# JIT-compiling it in the first trial on every new machine (~49 s on 2 cores).
DS_BUILD_ENV := $(if $(shell command -v nvidia-smi 2>/dev/null),,DS_ACCELERATOR=cpu DS_BUILD_SHM_COMM=1)
SHM_BUILT := from deepspeed.git_version_info import installed_ops as o; assert o['deepspeed_shm_comm']

# torch first (a CPU build lies on this machine's disk; PyPI gives CUDA builds elsewhere), then
# DeepSpeed compiled against it without build isolation, then the package and its extras: into
# the Python whose pip is $(PIP). `make install` runs it for the project's venv; the Dockerfile
# and cluster.yaml run it for the image's Python (one list of steps for every machine).
PIP    ?= $(BIN)/pip
EXTRAS ?= data,dev,test,server
install-into:
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q py-cpuinfo ninja hjson packaging psutil
	$(DS_BUILD_ENV) $(PIP) install -q --no-cache-dir --no-build-isolation deepspeed==0.19.8
	$(if $(DS_BUILD_ENV),$(PIP_PYTHON) -c "$(SHM_BUILT)" || $(DS_BUILD_ENV) $(PIP) install -q \
		--no-cache-dir --force-reinstall --no-deps --no-build-isolation deepspeed==0.19.8)
	$(PIP) install -q -e '.[$(EXTRAS)]'

PIP_PYTHON = $(dir $(shell command -v $(PIP)))python

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(MAKE) install-into PIP=$(BIN)/pip EXTRAS=$(EXTRAS)
	touch $(STAMP)

# the embedded default's sweep, its report (reports/quickstart/report.html) and the mixture the
# mixing law recommends from it
DEMO_TARGETS := eval/loss/math=min,eval/loss/code=min,eval/loss/general=min
demo: install
	$(BIN)/raymix sweep experiments/quickstart.yaml
	$(BIN)/raymix report quickstart
	$(BIN)/raymix recommend quickstart --target '$(DEMO_TARGETS)'

# Debian's chromium for the test that renders `raymix report`'s HTML page headless (playwright
# drives it; it downloads no browser of its own). Root installs it; anyone else through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install browser
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check raymix tests bench
	$(BIN)/ruff format --check raymix tests bench
	$(BIN)/mypy raymix

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
