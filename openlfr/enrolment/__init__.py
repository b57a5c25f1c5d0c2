"""Enrolment: putting people on a watchlist from reference photos, behind a quality gate, and the
``openlfr watchlist ...`` commands that manage watchlists."""
