"""The password rule (issue 17, item 5; NIST SP 800-63B): no common or leaked password, no repeats or easy
sequences, nothing built on the user name or the system's name, no control characters, not the current password;
one plain sentence for each refusal, and the same rule wherever a password is set (the API, which the console's
forms call, and ``openlfr users``)."""

from __future__ import annotations

import os
import subprocess

import pytest
from fastapi.testclient import TestClient

from openlfr.governance.passwords import password_problem
from openlfr.governance.roles import Role
from tests.conftest import OPENLFR_BIN
from tests.serverkit import FAST_HASHING, PASSWORD, add_user, build_app, configure, login

NAME = "constable.jones"
REFUSED = {
    "aaaaaaaaaaaa": "repeated",
    "password1234": "most used or leaked",
    "qwertyuiopasdf": "most used or leaked",
    "abcdefghijklmn": "sequence",
    NAME: "user name",
    "Constable.Jones1!": "user name",
    "OpenLFR2026!!": "name of this system",
    "openlfr-openlfr": "name of this system",
    "\x00" * 12: "control characters",
    "correct-horse\u202ebattery": "invisible formatting",
    " " * 15: "repeated",
    "short": "at least 12",
}
ACCEPTED = [PASSWORD, "another-long-password", "jones lives on maple street", "Tr0ub4dor&3-kestrel", "é" + PASSWORD]


def one_sentence(message: str) -> bool:
    return bool(message) and "\n" not in message and ". " not in message.rstrip(".")


@pytest.mark.parametrize("password", list(REFUSED))
def test_weak_passwords_are_refused_in_plain_words(password: str) -> None:
    problem = password_problem(password, NAME, "Constable Jones")
    assert problem is not None and REFUSED[password] in problem, problem
    assert one_sentence(problem) and (not password.strip() or password not in problem)


@pytest.mark.parametrize("password", ACCEPTED)
def test_passwords_hard_to_guess_are_accepted(password: str) -> None:
    assert password_problem(password, NAME, "Constable Jones") is None


def openlfr(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **FAST_HASHING}
    return subprocess.run([str(OPENLFR_BIN), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_every_door_applies_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch)
    app = build_app()
    add_user(app, "ann", Role.ADMIN)
    add_user(app, NAME, Role.OPERATOR)
    try:
        ann = login(app, "ann")
        jones = login(app, NAME)
        ids = {user["username"]: user["id"] for user in ann.get("/api/users").json()}

        def refused(answer: object, expected: str) -> None:
            assert answer.status_code == 400, answer.text  # type: ignore[attr-defined]
            detail = answer.json()["detail"]  # type: ignore[attr-defined]
            assert expected in detail and one_sentence(detail), detail

        # An administrator creating an account, or setting someone's password (the console's forms call these).
        for password, expected in REFUSED.items():
            body = {"username": "constable.jones.jr", "display_name": "Constable Jones", "password": password}
            body["role"] = "operator"
            refused(ann.post("/api/users", json=body), expected)
        context = {"username": "openlfr.operator", "password": "openlfr.operator", "role": "auditor"}
        refused(ann.post("/api/users", json=context), "user name")
        refused(ann.post(f"/api/users/{ids[NAME]}/password", json={"password": f"{NAME}-2026"}), "user name")
        refused(ann.post(f"/api/users/{ids[NAME]}/password", json={"password": PASSWORD}), "current password")
        # A person changing their own: not to the password they have now.
        same = {"current_password": PASSWORD, "new_password": PASSWORD}
        refused(jones.post("/api/me/password", json=same), "current password")
        weak = {"current_password": PASSWORD, "new_password": "password1234"}
        refused(jones.post("/api/me/password", json=weak), "most used or leaked")
        assert TestClient(app).get("/api/me", cookies=jones.http.cookies).status_code == 200  # nothing changed
        assert [u["username"] for u in ann.get("/api/users").json()] == ["ann", NAME]

        # The command line.
        made = openlfr(
            "users", "create", "dave.smith", "--role", "operator", "--password-stdin", stdin="password1234\n"
        )
        assert made.returncode == 2 and "most used or leaked" in made.stderr, made.stderr
        again = openlfr("users", "password", NAME, "--password-stdin", stdin=PASSWORD + "\n")
        assert again.returncode == 2 and "current password" in again.stderr, again.stderr
        for answer in (made, again):
            assert len(answer.stderr.strip().splitlines()) == 1 and "Traceback" not in answer.stderr
        good = openlfr("users", "password", NAME, "--password-stdin", stdin="jones lives on maple street\n")
        assert good.returncode == 0, good.stderr
    finally:
        app.state.server.store.close()
