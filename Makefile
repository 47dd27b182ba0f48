# qwenlab — every target creates/uses .venv, installs what it needs, and gets a model.
# Model: $QWENLAB_MODEL if set, else Qwen/Qwen3-0.6B when on disk or downloadable, else the offline model.
# The work is done by setup_course.py (standard-library Python, the same on Windows, macOS and Linux:
# `py setup_course.py lab` / `python3 setup_course.py lab`); each target here is one call of it.

VENV    ?= .venv
PYTHON  ?= python3
# CPU wheel of torch, installed first so no other package pulls a multi-GB CUDA build.
TORCH   ?= torch==2.13.0
EXTRAS  ?= offline,lab,test,serve,quant
# A domestic pip mirror: make lab PIP_MIRROR=https://pypi.tuna.tsinghua.edu.cn/simple
PIP_MIRROR ?=
SETUP   := $(PYTHON) setup_course.py --venv "$(VENV)" --torch "$(TORCH)" --extras "$(EXTRAS)" \
           $(if $(PIP_MIRROR),--pip-mirror "$(PIP_MIRROR)")

.PHONY: help install model lint test test-fast course lab clean strip

help:
	@echo "make course     run every notebook headless -> build/course/ (HTML + executed copies)"
	@echo "make test       the whole suite: unit tests, offline-model tests, every notebook (nbval)"
	@echo "make test-fast  unit tests on the tiny model only"
	@echo "make lint       ruff, import contracts (lint-imports), mypy"
	@echo "make lab        open the course in JupyterLab"

install:
	$(SETUP) install

model:
	$(SETUP) model

lint:
	$(SETUP) lint

test:
	$(SETUP) test

test-fast:
	$(SETUP) test-fast

course:
	$(SETUP) course

lab:
	$(SETUP) lab

strip:
	$(SETUP) strip

clean:
	$(SETUP) clean
