"""Many console event streams and API requests against a real server over HTTP, for the event-stream tests and
``benchmarks/event_streams.py``: open listeners, wait for an alert to reach all of them, load the API meanwhile."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import httpx


@dataclass
class Listener:
    """One open ``/api/events`` stream and the queue signatures it has been sent, with when they arrived."""

    token: str
    queue: list[tuple[float, dict[str, object]]] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str = ""

    def latest_at(self, alert_id: int) -> float | None:
        """When this stream was first told of a queue whose newest alert is ``alert_id`` (or a later one)."""
        for at, signature in self.queue:
            latest = signature.get("latest")
            if isinstance(latest, int) and latest >= alert_id:
                return at
        return None


async def listen(client: httpx.AsyncClient, base: str, listener: Listener) -> None:
    headers = {"Authorization": f"Bearer {listener.token}"}
    try:
        async with client.stream("GET", f"{base}/api/events", headers=headers) as answer:
            if answer.status_code != 200:
                listener.failure = f"status {answer.status_code}"
                listener.opened.set()
                return
            kind = ""
            async for line in answer.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "queue":
                    listener.queue.append((time.monotonic(), json.loads(line[6:])))
                    listener.opened.set()
    except (httpx.HTTPError, asyncio.CancelledError) as exc:
        if not isinstance(exc, asyncio.CancelledError):
            listener.failure = f"{type(exc).__name__}: {exc}"
        listener.opened.set()


@dataclass
class Load:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


async def load(base: str, token: str, paths: list[str], requests: int, concurrency: int) -> Load:
    """``requests`` GETs over ``paths`` in turn, ``concurrency`` at a time, each timed.

    Sent with aiohttp, not httpx: on a two-core machine the load generator shares the CPU with the server and
    the database, and httpx spent more CPU per request (3.8 ms) than the server it measured (2.7 ms), so its own
    delays made most of the tail; aiohttp's C parser spends about 0.4 ms."""
    result = Load()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(paths[index % len(paths)])
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:

        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                started = time.perf_counter()
                try:
                    async with client.get(f"{base}{path}", headers=headers) as answer:
                        await answer.read()
                        status = answer.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def open_listeners(
    client: httpx.AsyncClient, base: str, tokens: list[str], timeout: float
) -> tuple[list[Listener], list[asyncio.Task[None]]]:
    """One stream per token, each open and told of the queue once (or failed) within ``timeout`` seconds."""
    listeners = [Listener(token) for token in tokens]
    tasks = [asyncio.create_task(listen(client, base, listener)) for listener in listeners]
    await asyncio.wait_for(asyncio.gather(*(listener.opened.wait() for listener in listeners)), timeout)
    return listeners, tasks


async def wait_for_alert(listeners: list[Listener], alert_id: int, started: float, timeout: float) -> list[float]:
    """Seconds from ``started`` until each listener was told of ``alert_id`` (inf for any not told in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(listener.latest_at(alert_id) is None for listener in listeners):
        await asyncio.sleep(0.01)
    arrivals = [listener.latest_at(alert_id) for listener in listeners]
    return [float("inf") if at is None else at - started for at in arrivals]


def stream_client(streams: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=streams + 5, max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=httpx.Timeout(60, read=None), limits=limits)
