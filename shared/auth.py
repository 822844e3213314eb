"""Bearer tokens with roles: who may do what.

Tokens come from ``DEFENSA311_API_TOKENS`` (``role=token,role=token``) and from the
institution config's ``[[tokens]]`` (``role`` + the hex SHA-256 of the token). Both are
kept as SHA-256 digests; a presented token is hashed and compared with *every* stored
digest with :func:`hmac.compare_digest`, so neither the comparison nor the number of
entries checked depends on how much of a token was right.

Roles: ``staff``, ``supervisor``, ``superior`` (decides apelaciones), ``platform311`` and
``department:<code>``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from shared.config import TokenEntry

STAFF = "staff"
SUPERVISOR = "supervisor"
PLATFORM311 = "platform311"
SUPERIOR = "superior"
DEPARTMENT_PREFIX = "department:"


class TokenConfigError(ValueError):
    """``DEFENSA311_API_TOKENS`` or a ``[[tokens]]`` entry cannot be used."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, and the department for a department token."""

    role: str
    name: str | None = None

    @property
    def department(self) -> str | None:
        if self.role.startswith(DEPARTMENT_PREFIX):
            return self.role.removeprefix(DEPARTMENT_PREFIX)
        return None

    @property
    def is_staff(self) -> bool:
        """Staff and supervisors (supervisors may do everything staff may)."""
        return self.role in (STAFF, SUPERVISOR)

    @property
    def is_platform311(self) -> bool:
        return self.role == PLATFORM311

    @property
    def actor(self) -> str:
        """What the audit trail records as the actor (never a token)."""
        return f"{self.role}:{self.name}" if self.name else self.role


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_role(role: str, department_codes: set[str] | None = None) -> str:
    role = role.strip()
    if role in (STAFF, SUPERVISOR, SUPERIOR, PLATFORM311):
        return role
    if role.startswith(DEPARTMENT_PREFIX):
        code = role.removeprefix(DEPARTMENT_PREFIX)
        if code and (department_codes is None or code in department_codes):
            return role
        raise TokenConfigError(f"departamento desconocido en el rol de un token: {code!r}")
    raise TokenConfigError(
        f"rol de token desconocido: {role!r} "
        "(use staff, supervisor, superior, platform311 o department:<código>)"
    )


@dataclass(frozen=True)
class _Entry:
    sha256: str
    principal: Principal


class TokenStore:
    """The known tokens, as digests."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @classmethod
    def build(
        cls,
        env_tokens: str,
        config_tokens: list[TokenEntry],
        department_codes: set[str] | None = None,
    ) -> TokenStore:
        entries: list[_Entry] = []
        for item in env_tokens.split(","):
            item = item.strip()
            if not item:
                continue
            role, sep, token = item.partition("=")
            if not sep or not token.strip():
                # The message must not echo the item: it may contain a token.
                raise TokenConfigError(
                    "DEFENSA311_API_TOKENS debe tener la forma rol=token,rol=token"
                )
            entries.append(
                _Entry(digest(token.strip()), Principal(check_role(role, department_codes)))
            )
        for entry in config_tokens:
            entries.append(
                _Entry(
                    entry.sha256, Principal(check_role(entry.role, department_codes), entry.name)
                )
            )
        return cls(entries)

    def grants(self) -> frozenset[tuple[str, str]]:
        """``(role, SHA-256 of the token)`` of every known token."""
        return frozenset((entry.principal.role, entry.sha256) for entry in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        presented = digest(token)
        found: Principal | None = None
        for entry in self._entries:
            # No early exit: every entry is compared whatever matched.
            if hmac.compare_digest(presented, entry.sha256) and found is None:
                found = entry.principal
        return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``""`` if malformed."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()
