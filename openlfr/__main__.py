"""`python -m openlfr` runs the CLI."""

from openlfr.cli import main

main()
