#!/bin/sh
# The image's `openlfr` command (/opt/openlfr/bin/openlfr, first on PATH): the venv's openlfr, with settings that may
# be given as files (compose or podman secrets), as the official database images allow: for each
# OPENLFR_NAME_FILE=PATH, OPENLFR_NAME is read from PATH. PGPASSWORD_FILE gives PostgreSQL's client library the
# database password, so it is never part of OPENLFR_DATABASE_URL. Being the command itself (not an entry point),
# `docker compose exec serve openlfr users list` reads the same secrets as the server.
set -eu
for name in $(env | sed -n 's/^\(OPENLFR_[A-Z0-9_]*\)_FILE=.*/\1/p; s/^\(PGPASSWORD\)_FILE=.*/\1/p'); do
    eval "path=\${${name}_FILE}"
    value=$(cat "$path") || { echo "error: ${name}_FILE: cannot read $path" >&2; exit 2; }
    export "$name=$value"
    unset "${name}_FILE"
done
exec /opt/openlfr/venv/bin/openlfr "$@"
