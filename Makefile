# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint protos clean bench browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start the local stack and the services, register the examples, run them, print, stop.
demo: $(STAMP)
	$(PY) -m clients.cli demo

## Lint the protos and the code, then run the whole test suite (the dashboard's tests drive
## Debian's chromium: `browser` installs it when it is missing). Three pytest-xdist workers,
## each with a stack of its own, a test file each at a time: the suite mostly waits (leases
## to lapse, runs to end), so a third worker fills the two cores' idle time (11:53 -> 8:47,
## 2026-12-07, the same commit): see docs/architecture.md.
test: lint browser
	$(PY) -m pytest -n 3 --dist loadfile

## Debian's chromium for the dashboard's browser tests (Playwright drives it; nothing is
## downloaded from Playwright's CDN). Installed with apt-get when missing (root or sudo).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

## Regenerate wtm/ from protos/ (the one codegen command).
protos: $(STAMP)
	$(PY) scripts/gen_protos.py

## buf lint and buf breaking (against the main branch) on the protos; ruff and mypy on the hand-written code (wtm/ is generated).
lint: $(STAMP)
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf breaking --against '.git#branch=main'
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy common services clients tasks scripts bench

## Benchmarks on the local stack (starts and stops its own); prints JSON: every figure, and
## issue 18's ratios to Celery as the median of three alternating rounds (BENCH_ARGS= : none).
BENCH_ARGS ?= --compare celery --rounds 3
bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .wtm build *.egg-info
