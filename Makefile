# Two commands on a fresh Debian 12 machine: `make demo` and `make test`. Both install what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PYTHON ?= python3
STAMP := $(VENV)/.installed
# npm's Gotenberg client (chromiumly), pinned by tests/clients/package-lock.json, for the synchronous-route tests.
NODE_CLIENTS := tests/clients/node_modules/.package-lock.json

.PHONY: setup system venv node-clients test test-all lint stress parity bench demo clean

setup: system venv node-clients

system:
	sh docker/install-system.sh --dev

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

node-clients: $(NODE_CLIENTS)

$(NODE_CLIENTS): tests/clients/package.json tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider

lint: venv
	$(VENV)/bin/ruff check worker tests bench
	$(VENV)/bin/mypy worker

stress: setup
	$(PY) -m pytest -q -m slow tests/stress

# Every corpus document through stock `soffice --convert-to pdf` and through ours; writes docs/parity.md.
parity: setup
	$(PY) bench/parity.py

bench: setup
	$(PY) bench/run.py

demo: setup
	$(PY) -m worker demo tests/data/sample.docx

clean:
	rm -rf $(VENV) run bench/out tests/clients/node_modules
