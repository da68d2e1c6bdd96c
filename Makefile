# Set-up and everyday commands. `make demo`, `make test` and `make docs` create the environment
# when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint docs bench-eval clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,dev,docs]'
	# TrackEval (evaluate --tracking) without its declared opencv-python, which would replace
	# opencv-python-headless; its box metrics need only NumPy and SciPy
	$(PY) -m pip install -q --no-deps 'trackeval>=1.3'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/squeezedet demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest

# pytest's exit status 5 means no test was selected (e.g. -k matching none): not a failure here
test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(ARGS) || { status=$$?; [ $$status -eq 5 ] || exit $$status; \
		echo "make test-slow: no slow test selected"; }

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

clean-venv:
	rm -rf $(VENV)
