"""Bearer tokens and roles (shared/auth.py), without I/O."""

from __future__ import annotations

import hashlib

import pytest

from shared.auth import Principal, TokenConfigError, TokenStore, bearer_token, check_role
from shared.config import TokenEntry

DEPARTMENTS = {"vias", "aseo"}


def store(env: str = "", config: list[TokenEntry] | None = None) -> TokenStore:
    return TokenStore.build(env, config or [], DEPARTMENTS)


def test_environment_tokens_map_to_roles() -> None:
    tokens = store("staff=a1, supervisor=b2 ,platform311=c3,department:vias=d4")
    assert tokens.authenticate("a1") == Principal("staff")
    assert tokens.authenticate("b2") == Principal("supervisor")
    assert tokens.authenticate("c3") == Principal("platform311")
    principal = tokens.authenticate("d4")
    assert principal is not None and principal.department == "vias"
    assert not principal.is_staff and not principal.is_platform311


@pytest.mark.parametrize("token", ["", "a", "a1 ", "A1", "a1a1", "staff=a1", "b2x"])
def test_anything_else_is_refused(token: str) -> None:
    assert store("staff=a1,supervisor=b2").authenticate(token) is None


def test_config_tokens_are_stored_hashed() -> None:
    entry = TokenEntry(
        role="department:aseo", sha256=hashlib.sha256(b"t0k").hexdigest(), name="Aseo"
    )
    tokens = store(config=[entry])
    principal = tokens.authenticate("t0k")
    assert principal == Principal("department:aseo", "Aseo")
    assert principal.actor == "department:aseo:Aseo"
    # The hash itself is not a token.
    assert tokens.authenticate(entry.sha256) is None


def test_empty_configuration_accepts_no_token() -> None:
    assert len(store("")) == 0
    assert store(" , ").authenticate("") is None


@pytest.mark.parametrize(
    "env",
    ["staff", "staff=", "=abc", "admin=abc", "department:marte=abc", "department:=abc"],
)
def test_bad_token_configuration_is_refused_without_echoing_the_token(env: str) -> None:
    with pytest.raises(TokenConfigError) as error:
        store(env)
    assert "abc" not in str(error.value)


def test_roles() -> None:
    assert check_role("staff") == "staff"
    assert check_role("department:vias", DEPARTMENTS) == "department:vias"
    assert Principal("supervisor").is_staff
    assert Principal("staff").actor == "staff"
    assert Principal("department:vias").department == "vias"
    assert Principal("staff").department is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", ""),
        ("Bearer", ""),
        ("abc", ""),
    ],
)
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
