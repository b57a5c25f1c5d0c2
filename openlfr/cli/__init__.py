"""The command line, one module per command group (``main`` is the top-level app). ``openlfr`` runs ``main``."""

from openlfr.cli.main import app, main

__all__ = ["app", "main"]
