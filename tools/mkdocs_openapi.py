"""MkDocs hook (mkdocs.yml ``hooks``): the API reference from the code itself, never a copy that could drift.

At build time the operator server is put together on a throw-away SQLite database in a temporary folder (nothing
touches the data directory or the configured database, and nothing is fetched), its OpenAPI document is added to
the site as ``openapi.json``, and the ``<!-- api-routes -->`` marker of ``api.md`` becomes the table of its routes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

MARKER = "<!-- api-routes -->"
_document: dict[str, Any] = {}


def _openapi() -> dict[str, Any]:
    from openlfr.server import create_app
    from openlfr.settings import Settings

    with tempfile.TemporaryDirectory(prefix="openlfr-docs-") as folder:
        settings = Settings(data_dir=Path(folder), database_url=None, metrics_port=0)
        app = create_app(settings, background=False, pipelines=False)
        document = app.openapi()
        app.state.server.store.close()
    return document


def on_files(files: Files, config: MkDocsConfig) -> Files:
    _document.clear()
    _document.update(_openapi())
    files.append(File.generated(config, "openapi.json", content=json.dumps(_document, indent=1)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if MARKER not in markdown:
        return markdown
    rows = ["| resource | method | path | what |", "|---|---|---|---|"]
    for path, operations in _document["paths"].items():
        for method, operation in operations.items():
            rows.append(
                f"| {', '.join(operation.get('tags', []))} | {method.upper()} | `{path}` | {_what(operation)} |"
            )
    return markdown.replace(MARKER, "\n".join(rows))


def _what(operation: dict[str, Any]) -> str:
    """The first line of the route's docstring, else FastAPI's summary (its function name)."""
    text = (operation.get("description") or "").strip().split("\n")[0] or operation.get("summary", "")
    return text.replace("|", "\\|")
