"""Watchlists: people to look for, their reference embeddings, matching and thresholds."""
