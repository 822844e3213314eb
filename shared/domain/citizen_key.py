"""The citizen's key (*clave*): the second secret that lets the person who filed act on a case.

The tracking code identifies a case and may be shared; the clave is given only to the person
who filed (the receipt page, once) or issued again at the front desk after checking their
identity. It is stored only as an scrypt hash with its own random salt, so a copy of the
database does not reveal it and each guess against a stolen hash costs real work.

Format ``XXXX-XXXX-XXXX`` in Crockford's base32 (the tracking code's alphabet, see
:mod:`shared.tracking`): 12 random symbols = 60 bits. Reading it forgives case, spaces, dashes
and the letters people type for digits (``O`` → ``0``, ``I``/``L`` → ``1``).

Pure: no I/O. Hashing costs about 16 MiB and some tens of milliseconds by design; callers in
an event loop run it in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from shared.tracking import ALPHABET

_LENGTH = 12
_GROUP = 4
_CONFUSIONS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_IGNORED = re.compile(r"[\s\-‐‑‒–—―−]")
_SHAPE = re.compile(rf"[0-9A-HJKMNP-TV-Z]{{{_LENGTH}}}", re.ASCII)

# scrypt's cost: n=2**14, r=8 (16 MiB), p=1 — the interactive-login figure of the scrypt paper.
_N, _R, _P = 2**14, 8, 1
_SCHEME = "scrypt"


class MalformedKey(ValueError):
    """What was typed cannot be a clave (wrong length or symbols); says so in Spanish."""


def new_key() -> str:
    """A fresh clave, formatted for reading aloud: ``XXXX-XXXX-XXXX``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(_LENGTH))
    return "-".join(raw[i : i + _GROUP] for i in range(0, _LENGTH, _GROUP))


def normalize_key(value: str) -> str:
    """The canonical compact form of a typed clave; raises :class:`MalformedKey`."""
    compact = _IGNORED.sub("", value).upper().translate(_CONFUSIONS)
    if not _SHAPE.fullmatch(compact):
        raise MalformedKey(
            "la clave tiene 12 letras o dígitos (ej. 7K3M-9QXD-2ABC); revísela en su constancia"
        )
    return compact


def _derive(compact: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(compact.encode("ascii"), salt=salt, n=n, r=r, p=p, dklen=32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_key(key: str) -> str:
    """What is stored: ``scrypt$n$r$p$salt$digest`` (the parameters travel with the hash)."""
    salt = secrets.token_bytes(16)
    digest = _derive(normalize_key(key), salt, _N, _R, _P)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def key_matches(typed: str, stored: str | None) -> bool:
    """Whether ``typed`` is the clave whose hash is ``stored`` (constant-time comparison).

    A malformed ``typed`` or no stored hash never matches; the caller counts a miss as a
    failed guess either way.
    """
    if not stored:
        return False
    try:
        compact = normalize_key(typed)
        scheme, n, r, p, salt, digest = stored.split("$")
    except (MalformedKey, ValueError):
        return False
    if scheme != _SCHEME:
        return False
    candidate = _derive(compact, _unb64(salt), int(n), int(r), int(p))
    return hmac.compare_digest(candidate, _unb64(digest))
