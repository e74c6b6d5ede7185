# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# tcmalloc doubles CPU training speed here; used when present, installed best-effort by `make setup`.
TCMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4))
RUN     := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC)) $(BIN)/vemo

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned, so nothing later can resolve it to a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	-@[ -n "$(TCMALLOC)" ] || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1)) || \
	  echo "note: libtcmalloc-minimal4 not installed; training runs about 2x slower without it"
	touch $(STAMP)

demo: setup
	$(RUN) demo

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: lint
	$(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC)) $(BIN)/pytest

clean:
	rm -rf runs cache data/synth .pytest_cache
