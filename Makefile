# qwenlab — every target creates/uses .venv, installs what it needs, and gets a model.
# Model: $QWENLAB_MODEL if set, else Qwen/Qwen3-0.6B when on disk or downloadable, else the offline model.

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
# CPU wheel of torch, installed first so no other package pulls a multi-GB CUDA build.
TORCH   ?= torch==2.13.0
EXTRAS  ?= offline,lab,test,serve,quant
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help install model test test-fast course lab clean strip

help:
	@echo "make course     run every notebook headless -> build/course/ (HTML + executed copies)"
	@echo "make test       the whole suite: unit tests, offline-model tests, every notebook (nbval)"
	@echo "make test-fast  unit tests on the tiny model only"
	@echo "make lab        open the course in JupyterLab"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

model: install
	$(PY) -m qwenlab.course --prepare

test: model
	QWENLAB_STRICT_CHECKS=1 $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env

test-fast: install
	$(PY) -m pytest tests -m "not real_model"

course: model
	QWENLAB_STRICT_CHECKS=1 $(PY) tools/run_course.py notebooks build/course

lab: model
	$(VENV)/bin/jupyter lab notebooks/

strip: install
	$(PY) tools/strip_notebooks.py notebooks/*.ipynb

clean:
	rm -rf build .pytest_cache
