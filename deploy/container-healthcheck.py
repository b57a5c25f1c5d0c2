#!/opt/openlfr/venv/bin/python
"""The image's health check (/opt/openlfr/bin/openlfr-healthcheck [URL]): exit 0 when URL answers 200 within 4 s.

Default URL: the server's /health/live (the process answers; /health also reports the database and the cameras,
and a camera going down should not restart the server). A file rather than a `python3 -c` line, which
podman-compose quotes wrongly."""

import os
import sys
import urllib.request

port = os.environ.get("OPENLFR_SERVER_PORT", "8400")
url = sys.argv[1] if len(sys.argv) > 1 else f"http://127.0.0.1:{port}/health/live"
try:
    with urllib.request.urlopen(url, timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
