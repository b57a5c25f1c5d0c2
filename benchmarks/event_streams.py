"""Console event streams under load, against a real `openlfr serve` on 127.0.0.1 (issue 11, acceptance):
100 open /api/events streams plus 2,000 API requests at 20 at a time -> p95 latency (target < 200 ms) against the
same requests with no stream open (the baseline, same run), pool errors in the server's log (target 0), and how
long a new alert, written by another process as a camera's pipeline would, takes to reach all 100 streams
(target < 1 s).

    .venv/bin/python benchmarks/event_streams.py [--streams 100] [--requests 2000] [--concurrency 20]
        [--postgres | --database-url postgresql://...]   (default: SQLite in a temporary data directory;
        --postgres starts a throwaway PostgreSQL from the Debian package, as the tests do)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.eventkit import load, open_listeners, stream_client, wait_for_alert  # noqa: E402
from tests.serverkit import FAST_HASHING, add_alert, free_port  # noqa: E402

PATHS = ["/api/me", "/api/alerts", "/api/deployments", "/api/watchlists"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL for the run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openlfr-bench-events-") as folder:
        if not args.postgres:
            return run(Path(folder), args)
        from tests.postgres import start_postgres, stop_postgres

        server = start_postgres()
        try:
            server.admin('CREATE DATABASE "bench_events"')
            args.database_url = server.url("bench_events")
            return run(Path(folder), args)
        finally:
            stop_postgres(server)


def run(folder: Path, args: argparse.Namespace) -> int:
    env = {**os.environ, **FAST_HASHING, "OPENLFR_DATA_DIR": str(folder / "data"), "TMPDIR": str(folder)}
    if args.database_url:
        env["OPENLFR_DATABASE_URL"] = args.database_url
    os.environ.update(env)
    from openlfr.settings import get_settings

    get_settings.cache_clear()
    app, deployment, tokens = setup(args.streams + 1)
    port = free_port()
    log_path = folder / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/openlfr"), "serve", "--port", str(port), "--no-pipelines"],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base)
            figures = asyncio.run(scenario(base, app, deployment, tokens, args))
        finally:
            server.terminate()
            server.wait(timeout=30)
    pool_errors = log_path.read_text(errors="replace").count("QueuePool")
    baseline, loaded, arrivals, open_s = figures
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(f"event streams on {database}: {args.streams} streams open in {open_s:.1f} s")
    print(
        f"  {args.requests} requests at {args.concurrency} at a time, no stream open: "
        f"p50 {baseline.median:.1f} ms, p95 {baseline.p(0.95):.1f} ms, statuses {baseline.statuses}"
    )
    print(
        f"  the same with {args.streams} streams open:  p50 {loaded.median:.1f} ms, p95 {loaded.p(0.95):.1f} ms, "
        f"statuses {loaded.statuses}  (p95 ratio to baseline {loaded.p(0.95) / baseline.p(0.95):.2f})"
    )
    told = [a for a in arrivals if a != float("inf")]
    print(
        f"  a new alert reached {len(told)}/{len(arrivals)} streams: median {statistics.median(told) * 1000:.0f} ms, "
        f"last {max(arrivals) * 1000:.0f} ms"
        if told
        else "  a new alert reached no stream"
    )
    print(f"  pool errors in the server's log: {pool_errors}")
    ok = loaded.p(0.95) < 200 and pool_errors == 0 and max(arrivals) < 1.0 and set(loaded.statuses) == {200}
    print(f"  targets (p95 < 200 ms, no pool error, all streams told within 1 s): {'met' if ok else 'NOT met'}")
    app.state.server.store.close()
    return 0 if ok else 1


def setup(count: int):  # type: ignore[no-untyped-def]
    """Accounts, a watchlist and a live deployment in the store, and ``count`` API tokens of an operator."""
    from datetime import timedelta

    from openlfr.governance.roles import Role
    from openlfr.services import accounts
    from openlfr.store.governance_models import User
    from tests.serverkit import add_user, add_watchlist, build_app
    from tests.test_server_alerts import live_deployment

    app = build_app()
    add_user(app, "olly", Role.OPERATOR)
    add_user(app, "ava", Role.AUTHORISER)
    add_watchlist(app)
    deployment = live_deployment(app)
    with app.state.server.sessions() as db:
        user = db.query(User).filter_by(username="olly").one()
        tokens = [accounts.open_session(db, user, "token", timedelta(hours=2)) for _ in range(count)]
        db.commit()
    return app, deployment, tokens


def wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/health", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("openlfr serve did not answer")


async def scenario(base, app, deployment, tokens, args):  # type: ignore[no-untyped-def]
    loader, streams = tokens[0], tokens[1:]
    baseline = await load(base, loader, PATHS, args.requests, args.concurrency)
    async with stream_client(len(streams)) as client:
        started = time.monotonic()
        listeners, tasks = await open_listeners(client, base, streams, timeout=120)
        open_s = time.monotonic() - started
        failures = [listener.failure for listener in listeners if listener.failure]
        if failures:
            raise SystemExit(f"{len(failures)} streams failed to open: {failures[:3]}")
        loaded = await load(base, loader, PATHS, args.requests, args.concurrency)
        await asyncio.sleep(1.0)
        written = time.monotonic()
        alert = await asyncio.to_thread(add_alert, app, deployment)
        arrivals = await wait_for_alert(listeners, alert, written, timeout=10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return baseline, loaded, arrivals, open_s


if __name__ == "__main__":
    sys.exit(main())
