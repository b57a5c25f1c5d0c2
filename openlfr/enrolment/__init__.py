"""Enrolment: putting people on a watchlist from reference photos, behind a quality gate (the photos' analysis and
the all-or-nothing write; the audited use case is ``openlfr.services.enrolment``)."""
