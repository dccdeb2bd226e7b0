# `make test` and `make demo` set up .venv themselves: a fresh machine needs only Python and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: test demo docs lint typecheck tox bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The Cloud Tasks emulator pins protobuf<5 but works with today's client: install it alone.
	$(BIN)/python -m pip install --quiet --no-deps gcloud-tasks-emulator==0.6.2
	touch $(STAMP)

# The demo needs only the package and Django: no test or lint tools.
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest $(PYTEST_ARGS)

demo: $(DEMO_STAMP)
	cd example_project && ../$(BIN)/python manage.py demo

# The documentation site, with every warning an error; open docs/_build/html/index.html.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

tox: $(STAMP)
	$(BIN)/tox run-parallel -p 2

bench: $(STAMP)
	$(BIN)/python benchmarks/endpoint.py
	$(BIN)/python benchmarks/oidc.py
	$(BIN)/python benchmarks/push.py
	$(BIN)/python benchmarks/workflows.py
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/django_tasks.py
	$(BIN)/python benchmarks/local.py
	# On PostgreSQL (Debian's packages), with 1 and 4 workers per side.
	if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		$(BIN)/python benchmarks/local.py --postgres --workers 1 --samples 20 && \
		$(BIN)/python benchmarks/local.py --postgres --workers 4 --samples 20; \
	else echo "benchmarks/local.py --postgres skipped: apt-get install postgresql"; fi

clean:
	rm -rf $(VENV) .tox .mypy_cache .pytest_cache .ruff_cache build *.egg-info docs/_build
