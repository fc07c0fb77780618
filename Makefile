# Every target sets up .venv first (tools/setup_env.sh is idempotent and a no-op when nothing changed).
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: env demo test clean

env:
	@bash tools/setup_env.sh

demo: env
	@$(PY) tools/demo.py

test: env
	@$(PY) -m pytest tests -q -p no:cacheprovider

clean:
	rm -rf work_dirs outputs build
