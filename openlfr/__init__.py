"""OpenLFR: open live facial recognition for watchlist deployments, with safeguards built in."""

__version__ = "0.1.0"
