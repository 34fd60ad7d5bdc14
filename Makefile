# Two commands matter: `make demo` (run the product) and `make test` (run the tests).
# Both create .venv and install everything on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build; anything looser pulls a CUDA build.
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/withsense demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The gates CI runs before the tests: style and mistakes (ruff), the direction imports may run
# (import-linter, contracts in pyproject.toml), undeclared or unused dependencies (deptry).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .

stop:
	$(VENV)/bin/withsense db stop

clean:
	-$(VENV)/bin/withsense db stop
	rm -rf var
