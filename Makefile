# Two commands on a fresh Debian 12 machine: `make demo` and `make test`. Both install what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: setup system venv test test-all lint stress parity bench demo clean

setup: system venv

system:
	sh docker/install-system.sh --dev

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

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
	rm -rf $(VENV) run bench/out
