"""The password rule, after NIST SP 800-63B (section 3.1.1.2): long enough, any printable character, and not
one an attacker tries first. No composition rules (a digit, a capital...): they make passwords harder to remember,
not to guess.

What an attacker tries first is judged by zxcvbn (Dropbox's estimator, the ``zxcvbn`` package on PyPI): it ships
its lists inside the package (the 30,000 most common passwords of a corpus of 10 million leaked ones, English
words, names and surnames), so nothing is downloaded, and it sees more than a blocklist would: repeats
(``aaaa``, ``abcabc``), sequences (``1234``, ``abcd``), rows of keys, dates, l33t spellings, and words of the
context it is given (the user name, the system's name). A password must take at least 10^8 guesses by its
estimate (its score 3, "safely unguessable" online and a strong deterrent offline against argon2id).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from zxcvbn import zxcvbn

MIN_CHARS = 12
MAX_CHARS = 1024
MIN_SCORE = 3
# zxcvbn's own limit: its matching grows faster than quadratically with the length (1,024 characters take a
# minute), and a password whose first 72 characters are hard to guess is hard to guess.
JUDGED_CHARS = 72
SYSTEM_WORDS = ("openlfr",)
# Control characters, invisible format characters (bidi overrides, zero-width joiners), lone surrogates and
# line or paragraph separators: nothing a person types or can see, so nothing a person can type again.
UNTYPABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# What to say for the pattern that makes most of a guessable password, one sentence each.
WEAK_BECAUSE = {
    "repeat": "a password cannot be one character or group of characters repeated",
    "sequence": "a password cannot be an easy sequence such as abcd or 4321",
    "spatial": "a password cannot be a row of keys on the keyboard",
    "date": "a password cannot be mostly a date",
    "dictionary": "this password is one of the most used or leaked passwords or words; choose another",
}
TOO_EASY = "this password is too easy to guess; a few unrelated words make a strong one"
BUILT_ON_CONTEXT = "a password cannot be built on the user name, the person's name or the name of this system"


def context_words(*names: str) -> list[str]:
    """The words of the context that an attacker would try: each name whole and its parts, and the system's name."""
    words: list[str] = []
    for name in (*names, *SYSTEM_WORDS):
        lowered = name.strip().lower()
        for word in (lowered, *re.split(r"[\s._-]+", lowered)):
            if len(word) >= 3 and word not in words:
                words.append(word)
    return words


def _judge(password: str, words: Iterable[str]) -> dict[str, Any]:
    return zxcvbn(password[:JUDGED_CHARS], user_inputs=list(words), max_length=JUDGED_CHARS)


def _dominant_pattern(judged: dict[str, Any]) -> str:
    """The kind of match that covers most of the password."""
    longest = max(judged["sequence"], key=lambda match: len(match["token"]), default=None)
    return str(longest["pattern"]) if longest is not None else "bruteforce"


def password_problem(password: str, *names: str) -> str | None:
    """Why ``password`` may not be used by someone with these ``names`` (user name, display name), or None."""
    if len(password) < MIN_CHARS:
        return f"a password needs at least {MIN_CHARS} characters"
    if len(password) > MAX_CHARS:
        return f"a password can have at most {MAX_CHARS} characters"
    if any(unicodedata.category(char) in UNTYPABLE for char in password):
        return "a password cannot contain control characters or invisible formatting characters"
    words = context_words(*names)
    lowered = password.lower()
    if any(word in lowered for word in words):
        rest = lowered
        for word in sorted(words, key=len, reverse=True):
            rest = rest.replace(word, "")
        # What is left once the context is taken out must stand on its own.
        if len(rest) < MIN_CHARS // 2 or _judge(rest, words)["score"] < MIN_SCORE:
            return BUILT_ON_CONTEXT
    judged = _judge(password, words)
    if judged["score"] >= MIN_SCORE:
        return None
    return WEAK_BECAUSE.get(_dominant_pattern(judged), TOO_EASY)
