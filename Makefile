# Set-up and everyday commands. `make demo`, `make test` and `make docs` create the environment
# when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint docs bench-eval clean-venv web executorch browser test-browser

# the onnxruntime-web version `squeezedet export --format web` was tested with
ORT_WEB_VERSION ?= 1.31.1

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

# what the tests of the optional back ends need (each test skips, saying why, without it):
# ExecuTorch, and for the headless-browser test Chromium with its driver and ONNX Runtime Web
# (`make browser`, best effort: where it cannot install them, that test skips)
TEST_EXTRAS := $(VENV)/.test-extras
$(TEST_EXTRAS): $(STAMP) Makefile
	$(MAKE) executorch
	-$(MAKE) browser
	touch $(TEST_EXTRAS)

test: $(STAMP) $(TEST_EXTRAS)
	$(PY) -m pytest

# pytest's exit status 5 means no test was selected (e.g. -k matching none): not a failure here
test-slow: $(STAMP) $(TEST_EXTRAS)
	$(PY) -m pytest -m slow $(ARGS) || { status=$$?; [ $$status -eq 5 ] || exit $$status; \
		echo "make test-slow: no slow test selected"; }

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

# ONNX Runtime Web for `squeezedet export --format web`, into build/web (ignored by git)
web:
	npm install --prefix build/web --no-save --no-audit --no-fund onnxruntime-web@$(ORT_WEB_VERSION)

# ExecuTorch for `--format executorch` without the packages only its other backends need
executorch: $(STAMP)
	$(PY) -m pip install -q --no-deps 'executorch>=1.5,<1.6' 'torchao>=0.18,<0.19'
	$(PY) -m pip install -q 'ruamel.yaml>=0.18'

# the headless-browser test's needs: Debian's Chromium and its driver (apt-get, as root), Selenium
# (in the dev extra) and ONNX Runtime Web
browser: web $(STAMP)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q chromium chromium-driver; \
	else echo "install chromium and its driver (Debian: chromium chromium-driver) as root"; fi

test-browser: browser
	$(PY) -m pytest tests/test_web.py -n 0

clean-venv:
	rm -rf $(VENV)
