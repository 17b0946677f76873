# The two set-up commands are `make demo` and `make test`; both create .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BIOCAP_HOME ?= $(CURDIR)/.biocap
export BIOCAP_HOME

.PHONY: install system-deps demo test test-fast lint dev bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# IBM's network-config-analyzer (test_network_policies.py) pins PyYAML, networkx and lxml
# to old releases, so it lives in a venv of its own, called as a program.
NCA_STAMP := $(VENV)/nca/.installed-stamp
$(NCA_STAMP): $(STAMP)
	test -x $(VENV)/nca/bin/python || $(PYTHON) -m venv $(VENV)/nca
	$(VENV)/nca/bin/python -m pip install --quiet network-config-analyzer==2.1.0
	touch $(NCA_STAMP)

## Build the demo world and materialize the whole graph on it.
demo: install
	$(BIN)/biocap demo

## Debian packages the tests use: Chromium (browser test), PostgreSQL (DuckLake catalog).
## Installed when missing and apt-get can run as root; otherwise those tests skip.
system-deps:
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "system-deps: missing$$missing (needs root and apt-get); their tests will skip"; fi; \
	fi

## Lint (ruff, formatting, the import layering), then run the whole suite (slow
## end-to-end tests included).
test: install $(NCA_STAMP) system-deps
	$(BIN)/ruff check biocap_assets biocap_assets_tests bench
	$(BIN)/ruff format --check biocap_assets biocap_assets_tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -rs

## The suite without tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check biocap_assets biocap_assets_tests bench
	$(BIN)/ruff format --check biocap_assets biocap_assets_tests bench
	$(BIN)/lint-imports

## The Dagster UI on http://127.0.0.1:$(PORT) (default 3000) with the instance `make demo`
## used ($BIOCAP_HOME/dagster); a busy port fails at once.
PORT ?= 3000
dev: install
	$(BIN)/biocap dev --port $(PORT)

## Benchmarks (see BENCHMARKS.md); ROWS=1000000 for a quicker taxa run.
bench: install
	$(BIN)/python bench/taxa.py $(if $(ROWS),--rows $(ROWS),)

clean:
	rm -rf .biocap .pytest_cache .ruff_cache
