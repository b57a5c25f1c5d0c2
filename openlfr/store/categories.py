"""Why someone is on a watchlist, in the categories forces publish. Kept apart from the tables so the CLI can
name them without loading the database layer."""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    WANTED_COURT = "wanted_court"
    WANTED_OFFENCE = "wanted_offence"
    SEX_OFFENDER_CONDITIONS = "sex_offender_conditions"
    MISSING_VULNERABLE = "missing_vulnerable"
    OTHER = "other"


CATEGORY_VALUES = tuple(c.value for c in Category)
