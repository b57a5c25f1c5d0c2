"""OpenLFR: open live facial recognition for watchlist deployments, with safeguards built in."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("openlfr")  # one source: pyproject.toml's version, as installed
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
