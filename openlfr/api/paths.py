"""Path parameters the API and the console share: a listed person's id, which may hold a "/".

A PNC id reads 2001/0123456A. Sent as %2F, its "/" reaches the router decoded, so a plain segment cannot hold
it. The routes below a person (``.../expire``, ``.../photos/N.jpg``) match the id as a ``path``; the person's
own routes match it with ``person_id``, which refuses an id ending as one of those routes would, so such a path
is theirs (and a method they do not take answers 405, not the person's routes' 401 or 403).
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class PersonIdConvertor(Convertor[str]):
    regex = r"(?!.*/(?:expire|photos/[^/]*\.jpg)$).+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("person_id", PersonIdConvertor())
# In a route's path: a person's own route (their record, their removal), not the routes below them.
PERSON_IN_PATH = "{person:person_id}"
