# The README's two promises: `make demo` and `make test` work on a fresh machine.
# Everything they need (.venv, Python packages, Chromium for browser tests) is installed here when missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CHROMIUM ?= /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test accuracy bench bench-quick bench-chunks bench-rooms bench-storage chromium node services install clean screenshot

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Re-install when the package definition changes.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[test]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	fi
	@$(CHROMIUM) --version

# Node runs the viewer's JS decoder tests (tests/test_compact_js.py).
node:
	@if ! command -v node >/dev/null; then \
	  echo "installing Debian's nodejs for the JS decoder tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs >/dev/null; \
	fi
	@node --version

# Rooms across processes (tests/test_rooms_redis.py) start a real redis-server; the caching-proxy
# test (tests/test_nginx.py) a real nginx. Both run unprivileged on free ports from the tests.
services:
	@if ! command -v redis-server >/dev/null || [ ! -x /usr/sbin/nginx ]; then \
	  echo "installing Debian's redis-server and nginx for the rooms and proxy tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server nginx >/dev/null; \
	fi
	@redis-server --version
	@/usr/sbin/nginx -v

demo: $(VENV)/.installed
	$(VENV)/bin/racecast demo

test: $(VENV)/.installed-test chromium node services
	$(PY) -m pytest -q

bench: $(VENV)/.installed-test
	$(VENV)/bin/racecast bench

bench-quick: $(VENV)/.installed-test
	$(VENV)/bin/racecast bench --quick

# Chunk-mode viewers per core (docs/performance.md, "Chunk-mode viewers per core"): ~10 minutes.
bench-chunks: $(VENV)/.installed-test
	$(PY) -m benchmarks.chunk_viewers

# Bundle format 2 vs 3 (size, ingest time and peak RSS, open, derivation, serving CPU per mode) on the
# simulated 57-lap race and the real races in ../shared/realdata -> docs/performance.md "Storage" (~15 minutes).
bench-storage: $(VENV)/.installed-test
	$(PY) -m benchmarks.storage --out docs/performance.md

# Replays of the real sessions in ../shared/realdata scored against their truth -> docs/accuracy.md (~10 minutes).
accuracy: $(VENV)/.installed-test
	nice -n 10 $(VENV)/bin/racecast accuracy

# Rooms and the caching proxy (docs/performance.md, "Rooms and the caching proxy"): ~3 minutes.
bench-rooms: $(VENV)/.installed-test services
	$(PY) -m benchmarks.rooms

# Refresh docs/screenshot.png (the viewer mid-race in Chromium at 1280x720).
screenshot: $(VENV)/.installed-test chromium
	$(PY) scripts/screenshot.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
