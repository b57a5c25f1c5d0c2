"""What the console's browser tests share: Debian's chromium driven by Playwright, a login through the form,
axe-core (the npm package, fetched once by ``npm pack`` and checked against its pinned sha256) injected into a page,
the page-width check for narrow screens, and screenshots saved under the test run's output folder.

A browser test starts its server and browser once per module (see ``browser_session``) and opens a page per role
and width; in CI (``CI=true``) a missing browser or npm fails the test instead of skipping it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT
from tests.serverkit import PASSWORD

CHROMIUM = os.environ.get("OPENLFR_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screens"

WIDE = 1366
NARROW = 390
WIDTHS = (WIDE, NARROW)

AXE_PACKAGE = "axe-core@4.14.1"
AXE_MEMBER = "package/axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
AXE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "openlfr" / "test-tools"
SERIOUS = ("serious", "critical")
EVENT_WAIT_MS = 30_000  # the event board polls every half second; a busy machine is slower


def _missing(reason: str) -> None:
    """A tool the browser tests need is absent: CI fails (it is installed there), elsewhere the test skips."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def sync_api() -> Any:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        _missing(f"no browser at {CHROMIUM} (Debian package chromium; `make system-deps` as root)")
    return pytest.importorskip("playwright.sync_api")


@contextmanager
def chromium() -> Iterator[Any]:
    """One headless Chromium for a module's tests."""
    api = sync_api()
    with api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, width: int = WIDE, height: int = 900) -> Any:
    return browser.new_context(viewport={"width": width, "height": height}).new_page()


def log_in(page: Any, base: str, username: str, landing: str | None = None, password: str = PASSWORD) -> Any:
    """Log ``page`` in through the console's form; wait for ``landing`` (None: for whatever page answers)."""
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    if landing is None:
        page.wait_for_url(lambda url: not url.endswith("/login"))
        page.wait_for_load_state()
    else:
        page.wait_for_url(f"{base}{landing}")
    return page


def axe_source() -> str:
    """axe-core's script, from the cache or fetched once with ``npm pack`` (the registry is reachable here)."""
    cached = AXE_CACHE / f"{AXE_PACKAGE.replace('@', '-')}.min.js"
    if cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == AXE_SHA256:
        return cached.read_text(encoding="utf-8")
    npm = shutil.which("npm")
    if npm is None:
        _missing(f"npm is needed once to fetch {AXE_PACKAGE} (Debian package npm)")
    with tempfile.TemporaryDirectory(prefix="openlfr-axe-") as work:
        done = subprocess.run(
            [str(npm), "pack", AXE_PACKAGE, "--silent", "--cache", str(Path(work) / "npm-cache")],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        tarballs = sorted(Path(work).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            _missing(f"npm pack {AXE_PACKAGE} failed: {done.stderr.strip()[-300:]}")
        with tarfile.open(tarballs[0], "r:gz") as archive:
            handle = archive.extractfile(AXE_MEMBER)
            assert handle is not None, f"{AXE_MEMBER} missing from {AXE_PACKAGE}"
            data = handle.read()
    actual = hashlib.sha256(data).hexdigest()
    assert actual == AXE_SHA256, f"{AXE_PACKAGE} {AXE_MEMBER} has sha256 {actual}, not the pinned {AXE_SHA256}"
    AXE_CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data.decode("utf-8")


def axe_violations(page: Any, impacts: tuple[str, ...] = SERIOUS) -> list[str]:
    """axe-core's WCAG 2.x A/AA violations of ``impacts`` on the page as it is now, one line each."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: the console's Content-Security-Policy (script-src 'self') stays on.
        page.evaluate(f"() => {{ {axe_source()}\n}}")
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}});
            return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                where: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return [f"{v['impact']}: {v['id']} ({v['help']}) at {v['where']}" for v in found if v["impact"] in impacts]


def overflow_px(page: Any) -> int:
    """How far the page is wider than its viewport (0: no horizontal scroll)."""
    return int(page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth"))


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot under test-artifacts/screens/ (the test run's output folder, never committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name).strip('-')}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check_page(page: Any, name: str) -> list[str]:
    """Screenshot the page and report what is wrong with it: axe's serious/critical violations and, at narrow
    widths, horizontal scroll."""
    screenshot(page, name)
    problems = axe_violations(page)
    width = page.viewport_size["width"]
    wider = overflow_px(page)
    if wider > 0:
        problems.append(f"{wider} px wider than the {width} px viewport")
    return [f"{name}: {problem}" for problem in problems]
