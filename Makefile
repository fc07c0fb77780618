# Every target sets up the environment first (tools/setup_env.sh is idempotent and a no-op when nothing changed):
# .venv, or where IPR_VENV says, as setup_env.sh takes it.
VENV := $(abspath $(or $(IPR_VENV),$(CURDIR)/.venv))
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
# what `make test` runs: the whole suite, or e.g. PYTEST_ARGS="tests/test_head.py -k flip"
PYTEST_ARGS ?= tests

.PHONY: env demo test clean

env:
	@bash tools/setup_env.sh

demo: env
	@$(PY) tools/demo.py

test: env
	@$(PY) -m pytest $(PYTEST_ARGS) -q -p no:cacheprovider

clean:
	rm -rf work_dirs outputs build
