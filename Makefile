# Two commands matter: `make demo` (run the product) and `make test` (run the tests).
# While editing, `make test-fast` runs the tests not marked `slow` (pyproject.toml says which are).
# Both create .venv and install everything on first use, from the lock files:
#   requirements.lock      what the service runs with (the Dockerfile installs this one)
#   requirements-dev.lock  the same pins plus the test and lint tools (make installs this one)
# `make lock` regenerates both from pyproject.toml after a dependency change.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-stamp

# torch is locked as 2.13.0+cpu, the CPU-only build, on purpose: PyPI's plain torch wheel for Linux
# is the CUDA build, which pulls several GB of nvidia-* libraries that a CPU-only service never uses.
# The +cpu wheel is not on PyPI but on PyTorch's own CPU index. On this project's own machines (and
# in CI) pip finds it on local disk through its configured find-links, and CI must reach no host but
# the package registries, so the index is only added when pip cannot find the locked torch anywhere
# else (a dry run, which downloads nothing), with one line saying so. TORCH_INDEX names the index
# explicitly (a mirror, or to skip the check): make TORCH_INDEX=https://download.pytorch.org/whl/cpu test
TORCH_INDEX ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_PIN := $(shell grep -m1 '^torch==' requirements-dev.lock)
PIP = $(VENV)/bin/pip
PIP_TORCH := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links $(PIP_TORCH)

.PHONY: install lock demo test test-fast lint messages stop clean

$(STAMP): requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@extra="$(PIP_TORCH)"; \
	if [ -z "$$extra" ] && ! $(PIP) install --quiet --dry-run --no-deps --ignore-installed "$(TORCH_PIN)" >/dev/null 2>&1; then \
	    extra="--extra-index-url $(TORCH_CPU_INDEX)"; \
	    echo "$(TORCH_PIN) is not on this machine's package sources: installing it from PyTorch's CPU index ($(TORCH_CPU_INDEX))"; \
	fi; \
	echo "$(PIP) install --quiet $$extra -r requirements-dev.lock"; \
	$(PIP) install --quiet $$extra -r requirements-dev.lock
	# --no-deps: every dependency came from the lock above; this only links the project itself.
	$(PIP) install --quiet --no-deps -e .
	@# Debian's English-Russian dictionary, read when a ranker is trained (WITHSENSE_GLOSS_DICTIONARY):
	@# installed where this user may; without it Russian queries are glossed by USE's nearest words alone.
	@[ -f /usr/share/dictd/mueller7.dict.dz ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	    && { apt-get install -y -qq mueller7-dict >/dev/null 2>&1 \
	         || { apt-get update -qq && apt-get install -y -qq mueller7-dict >/dev/null; }; }; } \
	    || echo "Debian's mueller7-dict is not installed (apt-get install mueller7-dict as root): Russian queries will be glossed without its translations"
	touch $(STAMP)

install: $(STAMP)

lock: $(STAMP)
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) --extra test --extra lint --constraint requirements.lock \
	    --output-file requirements-dev.lock pyproject.toml

demo: $(STAMP)
	$(VENV)/bin/withsense demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The tests to run while editing: all but those marked `slow` (real training, torch networks and
# ONNX export, the full dataset, processes that load the models or a database of their own: gunicorn,
# the demo, killed ingestions, replicas, a browser). `make test`, and so CI, still runs everything.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

# The gates CI runs before the tests: style and mistakes (ruff), the direction imports may run
# (import-linter, contracts in pyproject.toml), undeclared or unused dependencies (deptry).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .

# The web page's translations (service/web/i18n.py): extract every string of the templates, the web
# views and static/app.js into messages.pot, merge it into each language's messages.po, then compile
# the .mo files the server reads. Both are committed, so a fresh clone serves Russian with no step
# of its own; tests/test_i18n.py fails when a string lacks its translation or a .mo is stale.
# After `make messages`, translate the new empty or "fuzzy" entries in messages.po and run it again.
MESSAGES := service/translations
messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg --add-location=file --no-wrap --sort-by-file \
	    --project=withsense --version=0.1.0 --header-comment="# The With Sense web page's strings (make messages)." \
	    -o $(MESSAGES)/messages.pot .
	$(VENV)/bin/pybabel update -i $(MESSAGES)/messages.pot -d $(MESSAGES) --no-wrap --ignore-obsolete
	$(VENV)/bin/pybabel compile -d $(MESSAGES) --statistics

# Every `withsense serve` of this data directory (gunicorn, its web workers, the image worker), then
# the embedded PostgreSQL; each process exits cleanly (tests/test_shutdown.py).
stop:
	$(VENV)/bin/withsense stop

clean:
	-$(VENV)/bin/withsense stop
	rm -rf var
