# Two entry points for a fresh machine: `make demo` and `make test`.
# torch and torchaudio are pinned to a pair that works together on CPU here;
# override with `make test TORCH="torch==X torchaudio==Y"`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.14.1 torchaudio==2.11.0

.PHONY: install demo test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]" $(TORCH)
	touch $@

demo: install
	$(VENV)/bin/zoo demo

test: install
	$(PY) -m pytest -q
