"""The signed link in the receipt e-mail that lets the person who filed get a new clave.

The clave itself never leaves intake (it is shown once and stored only as a hash), so the
receipt e-mail carries a link instead: ``/clave/{tracking_code}?t={token}``. Opening it
explains what the clave is, and a button issues a new one for the case.

The token is ``{expires}.{binding}.{mac}``:

- ``expires``: when the link stops working, in Unix seconds;
- ``binding``: a short digest of the case's stored clave hash when the link was made (or of
  nothing, for a case without a clave). Issuing a clave changes the hash, so a link works
  once: after it was used, or after staff issued a clave at the front desk, its binding no
  longer matches and the page says the link was already used;
- ``mac``: HMAC-SHA256 over the tracking code, ``expires`` and ``binding`` with the link's
  own secret (``DEFENSA311_CLAVE_LINK_SECRET``), URL-safe base64 without padding, compared
  in constant time.

The binding is a digest of a salted scrypt hash: it tells nothing about the clave, and it is
a message the MAC covers, never a key. Pure: no I/O, time passed in.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Where intake serves the link's page; the tracking code follows.
LINK_PATH = "/clave/"
#: The query parameter that carries the token.
TOKEN_PARAM = "t"  # noqa: S105 - a parameter's name
_PURPOSE = b"defensa311-clave-link"
_BINDING_BYTES = 9  # 72 bits: two different hashes of one case never share a binding
_MAX_TOKEN = 200


class LinkState(enum.Enum):
    VALID = "valid"
    #: Authentic, but past its date.
    EXPIRED = "expired"
    #: Authentic, but a clave was issued since it was made (this link or the front desk).
    USED = "used"
    #: Not made with our secret (tampered, truncated, another secret): a failed guess.
    FORGED = "forged"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def binding_of(clave_hash: str | None) -> str:
    """The digest of a case's stored clave hash that a link is bound to."""
    digest = hashlib.sha256(b"clave-binding|" + (clave_hash or "").encode("utf-8")).digest()
    return _b64(digest[:_BINDING_BYTES])


def _mac(secret: bytes, code: str, expires: int, binding: str) -> str:
    message = b"|".join((_PURPOSE, code.encode(), str(expires).encode(), binding.encode()))
    return _b64(hmac.new(secret, message, hashlib.sha256).digest())


def sign(secret: bytes, code: str, binding: str, expires: datetime) -> str:
    """The token of a link to ``code``'s clave page, valid until ``expires``."""
    seconds = int(expires.timestamp())
    return f"{seconds}.{binding}.{_mac(secret, code, seconds, binding)}"


def _parts(token: str) -> tuple[int, str, str] | None:
    if len(token) > _MAX_TOKEN or not token.isascii():
        return None
    raw, _, rest = token.partition(".")
    binding, _, mac = rest.partition(".")
    if not raw.isdigit() or len(raw) > 12 or not binding or not mac:
        return None
    return int(raw), binding, mac


def authentic(secret: bytes, code: str, token: str) -> bool:
    """Whether ``token`` was made for ``code`` with ``secret`` (constant-time comparison)."""
    parts = _parts(token)
    if parts is None:
        return False
    expires, binding, mac = parts
    expected = _mac(secret, code, expires, binding)
    return hmac.compare_digest(expected.encode(), mac.encode())


def check(secret: bytes, code: str, token: str, binding: str, now: datetime) -> LinkState:
    """What ``token`` is worth for ``code`` whose clave hash has ``binding`` now.

    The MAC is checked first: a forged token says nothing about the case.
    """
    parts = _parts(token)
    if parts is None or not authentic(secret, code, token):
        return LinkState.FORGED
    expires, linked, _ = parts
    if not hmac.compare_digest(linked.encode(), binding.encode()):
        return LinkState.USED
    if now.timestamp() > expires:
        return LinkState.EXPIRED
    return LinkState.VALID


def expires_of(token: str) -> datetime | None:
    """The expiry a token states (unchecked: read it only after :func:`check`)."""
    parts = _parts(token)
    return None if parts is None else datetime.fromtimestamp(parts[0], UTC)


@dataclass(frozen=True)
class KeyLinks:
    """The process's link signer: the secret and how long a link lives."""

    secret: bytes
    lifetime: timedelta

    def expiry(self, issued_at: datetime) -> datetime:
        return issued_at + self.lifetime

    def url(self, public_url: str, code: str, binding: str, expires: datetime) -> str:
        token = sign(self.secret, code, binding, expires)
        return f"{public_url.rstrip('/')}{LINK_PATH}{code}?{TOKEN_PARAM}={token}"

    def authentic(self, code: str, token: str) -> bool:
        return authentic(self.secret, code, token)

    def check(self, code: str, token: str, binding: str, now: datetime) -> LinkState:
        return check(self.secret, code, token, binding, now)
