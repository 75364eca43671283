# Two entry points for a fresh machine: `make demo` and `make test`.
# torch and torchaudio are pinned to a pair that works together on CPU here;
# override with `make test TORCH="torch==X torchaudio==Y"`. EXTRAS picks the optional
# dependencies, e.g. `make install EXTRAS=test,music` for rendering music.
# The editable install puts the checkout on sys.path (compat mode): setuptools' default finder
# loses to any folder called zoo/ or modalities/ in the working directory, which then hides the
# package (pypa/setuptools#3548).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.14.1 torchaudio==2.11.0
EXTRAS ?= test

.PHONY: install demo test

install: $(VENV)/.installed-$(EXTRAS)

$(VENV)/.installed-$(EXTRAS): pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" $(TORCH) --config-settings editable_mode=compat
	touch $@

demo: install
	$(VENV)/bin/zoo demo

test: install
	$(PY) -m pytest -q
