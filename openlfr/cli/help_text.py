"""The ``typer.Typer`` every command group is made with: help that reads like a manual page.

Typer 0.29 labels each value with its Python type (``--port <int>``, ``--webhook <list[str]>``), flags too
(``--json <bool>``), and braces a required argument in the usage line (``search [OPTIONS] {image}``). Here a value
is named for what it is (``--port PORT``, ``--reason TEXT`` where the declaration says so), a flag takes none, and
an argument reads ``IMAGE``, ``[SOURCE]...`` as in any Unix manual. ``tests/test_cli_snags.py`` reads every
command's help for a type label or a brace.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

__all__ = ["App"]


class _Argument(TyperArgument):
    """An argument shown by its placeholder alone (Typer 0.29 adds its type, and braces it in the usage line)."""

    def display_type_rich(self, ctx: Any) -> str:
        return ""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        shown = self.metavar or (self.name or "").upper()
        if not self.required:
            shown = f"[{shown}]"
        return [shown + ("..." if self.nargs != 1 else "")]


def _placeholder(param: Any) -> None:
    """Name the value a parameter takes, unless its declaration named it (``metavar=``)."""
    if isinstance(param, TyperOption):
        if param.is_flag:
            param.metavar = ""
        elif param.metavar is None:
            longest = max((opt for opt in param.opts if opt.startswith("--")), key=len, default=param.name or "")
            param.metavar = longest.lstrip("-").replace("-", "_").upper()
    elif isinstance(param, TyperArgument):
        if param.metavar is None:
            param.metavar = (param.name or "").upper()
        # The instances are built inside Typer, which takes no argument class: the subclass only changes display.
        param.__class__ = _Argument


def _plain(command: Any) -> None:
    for param in command.params:
        _placeholder(param)
    # ``--help`` is made on first use, from the context's option names: made here, so it is named like the rest.
    help_option = command.get_help_option(typer.Context(command))
    if help_option is not None:
        _placeholder(help_option)
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)


class _Group(TyperGroup):
    """A command group whose commands (and sub-groups) show plain placeholders."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain(self)


class App(typer.Typer):
    """``typer.Typer`` with the project's defaults: plain placeholders, no completion install, no pretty traceback
    (an error a person can act on is one line, printed by ``openlfr.cli.main.main``)."""

    def __init__(self, **kwargs: Any) -> None:
        defaults: dict[str, Any] = {"cls": _Group, "add_completion": False, "pretty_exceptions_enable": False}
        super().__init__(**{**defaults, **kwargs})
