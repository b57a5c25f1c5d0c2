"""One way each (issue 18 item 7): the runtime's loose ends stay folded.

Read from the code itself (its syntax tree and its import graph), so a second way coming back fails here, naming
where: one clock (``openlfr.clock``), an error's first line through ``openlfr.text.first_line``, an error's HTTP
status from one table, the pipeline configured by the settings alone, and no import loop among the CLI's modules.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import grimp
import pytest

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "openlfr"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(PACKAGE.rglob("*.py"))]


def _calls(tree: ast.Module) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def test_the_wall_clock_is_read_in_one_place() -> None:
    readings = [
        f"{path.relative_to(PROJECT_ROOT)}:{call.lineno}"
        for path, tree in _modules()
        if path != PACKAGE / "clock.py"
        for call in _calls(tree)
        if _dotted(call.func) in {"datetime.now", "datetime.utcnow", "datetime.today", "date.today"}
    ]
    assert not readings, f"read the time through openlfr.clock.utc_now, not: {readings}"


def test_an_errors_first_line_is_taken_in_one_place() -> None:
    """``text.first_line``, defined once; no inline ``str(exc).splitlines()[0]`` (which fails on an error with no
    text)."""
    copies = [
        f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
        for path, tree in _modules()
        if path != PACKAGE / "text.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Call)
        and _dotted(node.value.func).endswith("splitlines")
    ]
    assert not copies, f"use openlfr.text.first_line: {copies}"
    definitions = [
        f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "first_line"
    ]
    assert [where.split(":")[0] for where in definitions] == ["openlfr/text.py"], f"one first_line: {definitions}"


def test_an_errors_http_status_is_written_once() -> None:
    from openlfr import errors
    from openlfr.api.app import PLAIN_ANSWERS, status_of

    own_status = [
        name
        for name, kind in vars(errors).items()
        if isinstance(kind, type) and issubclass(kind, Exception) and "status" in vars(kind)
    ]
    assert not own_status, f"statuses belong in openlfr.api.app.PLAIN_ANSWERS, not on the types: {own_status}"
    assert status_of(errors.LoginRefused("wrong user name or password")) == 401
    assert status_of(errors.LoginThrottled("too many failed logins")) == 429
    assert status_of(errors.UploadTooLarge("too large")) == 413
    assert status_of(errors.InvalidText("a NUL")) == 400 == PLAIN_ANSWERS[errors.OpenLFRError]
    assert status_of(errors.NotFound("no such thing")) == 404


def test_the_pipeline_is_configured_by_the_settings_alone() -> None:
    """``settings.stream`` is the pipeline's configuration: no alias of it, and no second parameter carrying it."""
    from openlfr.stream import pipeline
    from openlfr.stream.runner import PipelineRunner
    from openlfr.stream.worker import WorkerSpec

    assert not hasattr(pipeline, "PipelineConfig")
    assert "config" not in inspect.signature(PipelineRunner).parameters
    assert "config" not in {field.name for field in dataclasses.fields(WorkerSpec)}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("openlfr", cache_dir=None)


def test_no_import_loop_among_the_cli_modules(graph: grimp.ImportGraph) -> None:
    """A loop means something sits in the wrong module: a command group is registered by ``cli.main``."""
    modules = {module for module in graph.modules if module.startswith("openlfr.cli.")}
    loops = sorted(
        (importer, imported)
        for importer in modules
        for imported in graph.find_modules_directly_imported_by(importer) & modules
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert not loops, f"import loops in the CLI: {loops}"
