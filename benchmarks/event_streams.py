"""Console event streams under load, against a real `openlfr serve` on 127.0.0.1 (issue 11, acceptance):
100 open /api/events streams plus 2,000 API requests at 20 at a time -> p95 latency (target < 200 ms) against the
same requests with no stream open (the baseline, same run), pool errors in the server's log (target 0), and how
long a new alert, written by another process as a camera's pipeline would, takes to reach all 100 streams
(target < 1 s).

    .venv/bin/python benchmarks/event_streams.py [--streams 100] [--requests 2000] [--concurrency 20]
        [--postgres | --database-url postgresql://...]   (default: SQLite in a temporary data directory;
        --postgres starts a throwaway PostgreSQL from the Debian package, as the tests do)
        [--requests-only] [--profile FILE]

The requests are sent with aiohttp (``tests/eventkit.load``), the streams held with httpx: the load generator
shares the two cores with the server and the database, and httpx spent more CPU a request than the server did.
Beside the wall-clock figures it prints the server's own CPU seconds for each batch of requests (from
/proc: user + system time of the `openlfr serve` process): on a shared machine wall-clock percentiles move with
the neighbours' load, the CPU the server spends per request much less. ``--requests-only`` runs the batch with no
stream (quick, for profiling); ``--profile FILE`` samples the server with py-spy during that batch and prints the
functions it spent most time in (FILE keeps the collapsed stacks).
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

from openlfr.vision.providers import provider_line

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
    parser.add_argument("--requests-only", action="store_true", help="only the batch of requests, no stream")
    parser.add_argument("--paths", default=",".join(PATHS), help="the GET routes the requests take in turn")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the server during the requests")
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
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
            if args.requests_only:
                return requests_only(base, server.pid, tokens[0], args)
            figures = asyncio.run(scenario(base, server.pid, app, deployment, tokens, args))
        finally:
            server.terminate()
            server.wait(timeout=30)
    pool_errors = log_path.read_text(errors="replace").count("QueuePool")
    baseline, loaded, arrivals, open_s, cpu = figures
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
    print(
        f"  server CPU for {args.requests} requests: {cpu[0]:.2f} s with no stream, {cpu[1]:.2f} s with "
        f"{args.streams} streams open"
    )
    print(
        f"  the load generator's own CPU (this process, streams included): {cpu[2]:.2f} s and {cpu[3]:.2f} s "
        "(it shares the machine's cores with the server and the database)"
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_only(base: str, pid: int, token: str, args: argparse.Namespace) -> int:
    paths = args.paths.split(",")
    asyncio.run(load(base, token, paths, 100, args.concurrency))  # warm: imports, caches, the pool
    profiler = None
    if args.profile is not None:
        profiler = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/py-spy"),
                *(
                    "record",
                    "-p",
                    str(pid),
                    "-r",
                    "250",
                    "--format",
                    "raw",
                    "--gil",
                    "--nonblocking",
                    "-o",
                    str(args.profile),
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
    before = cpu_seconds(pid)
    batch = asyncio.run(load(base, token, paths, args.requests, args.concurrency))
    used = cpu_seconds(pid) - before
    print(
        f"{args.requests} requests at {args.concurrency} at a time ({', '.join(paths)}): server CPU {used:.2f} s "
        f"({used / args.requests * 1000:.2f} ms a request); p50 {batch.median:.1f} ms, p95 {batch.p(0.95):.1f} ms, "
        f"statuses {batch.statuses}"
    )
    if profiler is not None:
        profiler.send_signal(2)
        profiler.wait(timeout=60)
        print_profile(args.profile)
    return 0


def print_profile(path: Path, top: int = 40) -> None:
    """The functions most often on the stack (inclusive) and on top of it (self), from py-spy's raw output."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    print(f"profile: {total} samples (idle threads included)")
    for title, table in (("inclusive", inclusive), ("self", own)):
        print(f"  top {title}:")
        for frame, count in sorted(table.items(), key=lambda item: -item[1])[:top]:
            print(f"    {count * 100 / max(total, 1):5.1f}%  {frame[:150]}")


async def scenario(base, pid, app, deployment, tokens, args):  # type: ignore[no-untyped-def]
    loader, streams = tokens[0], tokens[1:]
    cpu_before, own_before = cpu_seconds(pid), time.process_time()
    baseline = await load(base, loader, PATHS, args.requests, args.concurrency)
    cpu_baseline, own_baseline = cpu_seconds(pid) - cpu_before, time.process_time() - own_before
    async with stream_client(len(streams)) as client:
        started = time.monotonic()
        listeners, tasks = await open_listeners(client, base, streams, timeout=120)
        open_s = time.monotonic() - started
        failures = [listener.failure for listener in listeners if listener.failure]
        if failures:
            raise SystemExit(f"{len(failures)} streams failed to open: {failures[:3]}")
        cpu_before, own_before = cpu_seconds(pid), time.process_time()
        loaded = await load(base, loader, PATHS, args.requests, args.concurrency)
        cpu_loaded, own_loaded = cpu_seconds(pid) - cpu_before, time.process_time() - own_before
        await asyncio.sleep(1.0)
        written = time.monotonic()
        alert = await asyncio.to_thread(add_alert, app, deployment)
        arrivals = await wait_for_alert(listeners, alert, written, timeout=10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return baseline, loaded, arrivals, open_s, (cpu_baseline, cpu_loaded, own_baseline, own_loaded)


if __name__ == "__main__":
    sys.exit(main())
