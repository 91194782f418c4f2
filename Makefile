# The two commands of the README contract: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit prometheus chromium wrk bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/canary-stats demo

lint: $(STAMP)
	$(BIN)/ruff check canary_stats tests bench notebooks
	$(BIN)/ruff format --check canary_stats tests bench notebooks

typecheck: $(STAMP)
	$(BIN)/mypy

# The integration tests backfill and query a real Prometheus (Debian's package). Its
# post-install may try to start a service; without an init system that is harmless.
prometheus:
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends prometheus; }

# The weekly report is opened in headless Chromium (Debian's package; playwright drives
# it, with no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends chromium; }

unit: $(STAMP) prometheus chromium
	$(BIN)/pytest

test: lint typecheck unit

# The service benchmark's load comes from wrk (Debian's package).
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk; }

bench: $(STAMP) prometheus wrk
	$(BIN)/python -m bench.run_all
	$(BIN)/python -m bench.data_layer
	$(BIN)/python -m bench.service
	$(BIN)/python -m bench.rollout
	$(BIN)/python -m bench.realistic

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
