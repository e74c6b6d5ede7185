# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# tcmalloc doubles CPU training speed here; used when present, installed best-effort by `make setup`.
# Looked up by the shell when a recipe runs, i.e. after `setup` may have installed it.
FIND_TCMALLOC := ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 2>/dev/null | head -n 1
PRELOAD := LD_PRELOAD=$$($(FIND_TCMALLOC))

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned, so no later requirement can move it to another release. (PyPI's Linux torch
	# is the multi-GB CUDA build: for the CPU build, create .venv with it first, as README says.)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	-@[ -n "$$($(FIND_TCMALLOC))" ] || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1)) || \
	  echo "note: libtcmalloc-minimal4 not installed; training runs about 2x slower without it"
	# Headless Chromium turns report.html into report.pdf and lets a test render the report; optional.
	-@command -v chromium >/dev/null || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	    >/dev/null 2>&1)) || echo "note: chromium not installed; reports come without PDF, its test skips"
	touch $(STAMP)

demo: setup
	$(PRELOAD) $(BIN)/vemo demo

lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

test: lint
	$(PRELOAD) $(BIN)/pytest

clean:
	rm -rf runs cache data/synth .pytest_cache
