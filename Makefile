# jupyter-gov: two commands set everything up on a fresh clone.
#   make demo   run the quickstart notebook headlessly on the embedded demo
#   make test   install and run the whole test suite
#   make lab    open JupyterLab on notebooks/
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK = 1
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = 1

.PHONY: install demo test stress lab bench lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -e ".[test,dev]"
	@touch $(STAMP)

# The sidebar's node packages (jest for its tests); the editable install above runs
# `jlpm install` only when it builds the extension, so a changed package.json lands here.
LABDEPS := labextension/node_modules/.yarn-state.yml
$(LABDEPS): labextension/package.json labextension/yarn.lock | $(STAMP)
	@if command -v node >/dev/null 2>&1; then \
	  cd labextension && $(abspath $(BIN))/jlpm install; \
	else echo "make: node is missing; the sidebar's jest tests will be skipped"; fi

install: $(STAMP) $(LABDEPS)

demo: install
	@$(BIN)/jupyter-gov demo notebooks/quickstart.ipynb

test: install
	$(BIN)/python -m pytest

# The adversarial suites at full length: every masking shape on every classified column for
# every demo user, 5,000 fuzzed statements, the live engines. About 15-25 minutes on 2 cores.
stress: install
	JUPYTER_GOV_STRESS=1 $(BIN)/python -m pytest tests/adversarial tests/gateway/test_suite_*.py -q

lab: install
	$(BIN)/jupyter lab notebooks/

bench: install
	$(BIN)/python -m pip install -qq -e ".[bench]"
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check jupyter_gov tests bench
	$(BIN)/ruff format --check jupyter_gov

clean:
	rm -rf $(VENV) build dist jupyter_gov/labextension .pytest_cache
