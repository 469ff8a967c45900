# Two commands on a fresh machine: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install proto lint test test-fast test-fleet run demo fleet bench browser clean

# SPANDREL: upscaler architectures (registry and inference), installed --no-deps after torch: it declares
# torchvision, which would replace the pinned CPU torch with a multi-GB CUDA build; only its LaMa and
# RestoreFormer archs use torchvision (service_kit/spandrel_loader.py stands in for it). einops is its
# one other dependency not already ours.
SPANDREL := 'spandrel==0.4.2' 'einops>=0.8'

$(STAMP): pyproject.toml Makefile
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel lies on disk here; an unpinned torch pulls GBs of CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	# The fleet extra too (ray[serve]: an 80 MB wheel, seconds to install): `make test` runs the fleet tests.
	$(PY) -m pip install -q -e '.[dev,fleet]'
	$(PY) -m pip install -q --no-deps $(SPANDREL)
	touch $(STAMP)

install: $(STAMP)

# Regenerate the Python stubs from protos/ (committed; tests/test_protos.py fails on drift).
proto: install
	$(PY) scripts/gen_protos.py

lint: install
	$(VENV)/bin/buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy service_kit metadata_svc civitai_svc modelmgr inference_svc gateway

# Debian's chromium for the browser tests (Playwright cannot download its own browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: browser tests will be skipped (install Debian's chromium)"; fi; }

test: install lint browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not browser and not slow"

# The fleet tests alone: a Ray cluster on 127.0.0.1 with two CPU workers (about a minute).
test-fleet: install
	$(PY) -m pytest -q -m fleet tests/inference_svc/test_fleet.py

run: install
	$(PY) -m devtools.stack

demo: install
	$(PY) -m devtools.stack --demo

# The demo with inference as a fleet: FLEET_WORKERS Ray Serve CPU workers on a local Ray cluster.
FLEET_WORKERS ?= 2
fleet: install
	$(PY) -m devtools.stack --demo --fleet $(FLEET_WORKERS)

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
