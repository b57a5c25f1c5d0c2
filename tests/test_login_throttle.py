"""The login throttle under concurrency, against a real server on 127.0.0.1, on SQLite and PostgreSQL: a burst of
wrong passwords for one name gets at most the limit of password checks (argon2 verifications counted as they
happen), the rest are refused with 429; argon2 runs a few at a time, so a burst of logins costs bounded memory."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from openlfr.governance.roles import Role
from tests.serverkit import PASSWORD, LiveServer, add_user, build_app, configure

BURST = 50


class VerificationCounter:
    """Counts the real argon2 verifications the server runs, and how many ran at once at most."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = self.running = self.most_at_once = 0
        self.lock = threading.Lock()
        original = PasswordHasher.verify

        def counted(hasher: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
            with self.lock:
                self.calls += 1
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            try:
                return original(hasher, hash, password)
            finally:
                with self.lock:
                    self.running -= 1

        monkeypatch.setattr(PasswordHasher, "verify", counted)


async def attempt(base: str, username: str, password: str, start: asyncio.Event) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        page = await client.get("/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match
        await start.wait()
        answer = await client.post("/login", data={"username": username, "password": password, "csrf_token": match[1]})
        return answer.status_code


async def burst(base: str, logins: list[tuple[str, str]]) -> list[int]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(attempt(base, name, password, start)) for name, password in logins]
    await asyncio.sleep(0.5)  # every client holds its login form
    start.set()
    return await asyncio.gather(*tasks)


def test_a_burst_of_wrong_passwords_gets_at_most_the_limit_of_checks(
    monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    configure(monkeypatch)
    app = build_app()
    add_user(app, "olly", Role.OPERATOR)
    counter = VerificationCounter(monkeypatch)
    try:
        with LiveServer(app) as server:
            statuses = asyncio.run(burst(server.url, [("olly", f"wrong-guess-{i:04d}") for i in range(BURST)]))
            checked = counter.calls
            # The right password now: still locked out (the burst's failures count), and not even checked.
            right = asyncio.run(burst(server.url, [("olly", PASSWORD)]))
    finally:
        app.state.server.store.close()
    limit = app.state.server.settings.login_max_failures
    print(f"{BURST} concurrent wrong passwords: {checked} checked, {statuses.count(429)} refused with 429")
    assert checked <= limit, f"{checked} passwords checked"
    assert statuses.count(401) == checked and statuses.count(429) == BURST - checked, statuses
    assert right == [429] and counter.calls == checked
    assert counter.most_at_once <= app.state.server.settings.login_concurrent_checks


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")


def test_concurrent_logins_at_full_argon2_cost_stay_within_bounded_memory(
    monkeypatch: pytest.MonkeyPatch, isolated_data_dir: Path
) -> None:
    """Twenty logins at once at the real cost (64 MiB each): two checks at a time, not twenty."""
    configure(monkeypatch)
    app = build_app()
    add_user(app, "olly", Role.OPERATOR)
    for key in ("OPENLFR_ARGON2_MEMORY_KIB", "OPENLFR_ARGON2_TIME_COST", "OPENLFR_ARGON2_PARALLELISM"):
        monkeypatch.delenv(key)
    from openlfr.settings import Settings

    full = Settings()
    app.state.server.settings = full
    counter = VerificationCounter(monkeypatch)
    logins = [
        (f"someone-{i:02d}", f"guess-{i:04d}") for i in range(full.login_ip_max_failures - 1)
    ]  # the warm-up counts too
    try:
        with LiveServer(app) as server:
            asyncio.run(burst(server.url, [("olly", "warm-up-guess")]))
            Path("/proc/self/clear_refs").write_text("5")  # the peak resident size starts again from here
            before = peak_rss_kib()
            statuses = asyncio.run(burst(server.url, logins))
            growth_mib = (peak_rss_kib() - before) / 1024
    finally:
        app.state.server.store.close()
    print(
        f"{len(logins)} concurrent logins at full cost: peak RSS +{growth_mib:.0f} MiB, {counter.most_at_once} at once"
    )
    assert statuses == [401] * len(logins)
    assert counter.most_at_once <= full.login_concurrent_checks
    memory_each_mib = full.argon2_memory_kib / 1024
    # Unbounded, twenty checks at once would take 20 x 64 MiB; bounded, about 2 x 64 MiB plus the clients' needs.
    assert growth_mib < (full.login_concurrent_checks + 2) * memory_each_mib, f"peak grew {growth_mib:.0f} MiB"
