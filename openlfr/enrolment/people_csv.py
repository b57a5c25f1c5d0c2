"""``people.csv``: who each person of a folder import is. One row per person sub-folder (``id`` is the folder's
name), the header ``id,name,category,reason,legal_basis`` in any order; blank cells are filled by what the
command gives for the whole import, or the person is refused. A file that cannot be read as that table is refused
whole, before anything is analysed or written."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from openlfr.errors import OpenLFRError
from openlfr.text import escaped

PEOPLE_CSV = "people.csv"
COLUMNS = ("id", "name", "category", "reason", "legal_basis")


@dataclass(frozen=True)
class Listing:
    """What people.csv (or the folder's name) says about one person; "" where it says nothing."""

    name: str = ""
    category: str = ""
    reason: str = ""
    legal_basis: str = ""


def read_people_csv(path: Path) -> dict[str, Listing]:
    """The rows by id, or ``OpenLFRError`` naming the line at fault."""
    listings: dict[str, Listing] = {}
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header = [str(name).strip() for name in reader.fieldnames or []]
            missing = [name for name in COLUMNS if name not in header]
            unknown = [name for name in header if name not in COLUMNS]
            if missing or unknown or len(set(header)) != len(header):
                raise OpenLFRError(
                    f"{path}: the first line must be the header {','.join(COLUMNS)}"
                    + (f" (missing: {', '.join(missing)})" if missing else "")
                    + (f" (unknown: {', '.join(map(escaped, unknown))})" if unknown else "")
                )
            reader.fieldnames = header
            for row in reader:
                if None in row:
                    raise OpenLFRError(f"{path} line {reader.line_num}: more cells than the header has columns")
                cells = {key: (value or "").strip() for key, value in row.items()}
                reference_id = cells.pop("id")
                if not reference_id:
                    raise OpenLFRError(f"{path} line {reader.line_num}: no id")
                if reference_id in listings:
                    raise OpenLFRError(f"{path} line {reader.line_num}: the id {escaped(reference_id)} again")
                listings[reference_id] = Listing(**cells)
    except UnicodeDecodeError:
        raise OpenLFRError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise OpenLFRError(f"{path}: not a readable CSV file ({exc})") from None
    return listings
