"""Tracking codes: what a citizen writes down, reads over the phone and types to follow a case.

Format ``YYYY-XXX-XXX-XXC`` (e.g. ``2025-7K3-M9Q-XD2``): the filing year, eight random symbols
and one check symbol, in groups of three so it can be dictated like a phone number.

* **Alphabet**: Crockford's base32, ``0-9`` and ``A-Z`` without ``I L O U``. The letters that
  look or sound like digits are gone, and what people type instead is mapped back when reading
  a code: ``O`` → ``0``, ``I``/``L`` → ``1``. We keep ``0`` and ``1`` (rather than also dropping
  them) because that mapping is the standard Crockford one and keeps 32 symbols = 5 bits each.
* **Randomness**: 8 symbols from :mod:`secrets` = 40 bits per year. The codes are not
  sequential, so they cannot be counted through: with ``N`` cases filed in a year, a blind
  guess hits one in about ``2**40 / N`` tries (about 11 million tries for 100 000 cases). They
  are not secret either: the public Open311 listing shows recent ones (small pages, few,
  rate-limited). The HTTP lookup is rate-limited elsewhere, and a lookup shows status, not
  personal data.
* **Check symbol**: a Damm check over the year and the random symbols, computed in the
  quasigroup ``x ∘ y = 2·x + y`` over GF(32) (a totally anti-symmetric quasigroup, as Damm's
  algorithm needs). It catches every single wrong symbol and every swap of two adjacent
  symbols before a lookup is made, so a typo reads "código mal escrito" instead of "no existe".
  It adds no secrecy (the algorithm is public); the 40 random bits do that.

Uniqueness is the database's job (a unique index; on the rare collision, draw again).
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "ALPHABET",
    "TRACKING_CODE_PATTERN",
    "is_valid_tracking_code",
    "new_tracking_code",
    "normalize_tracking_code",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {symbol: index for index, symbol in enumerate(ALPHABET)}
_RANDOM_LENGTH = 8
_GROUP = 3

_SYMBOL_CLASS = "[0-9A-HJKMNP-TV-Z]"
TRACKING_CODE_PATTERN = (
    rf"^[0-9]{{4}}-{_SYMBOL_CLASS}{{3}}-{_SYMBOL_CLASS}{{3}}-{_SYMBOL_CLASS}{{3}}$"
)

# What people type for a symbol that is not in the alphabet, plus dash look-alikes dropped.
_CONFUSIONS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_IGNORED = re.compile(r"[\s\-‐‑‒–—―−]")
_COMPACT = re.compile(rf"[0-9]{{4}}{_SYMBOL_CLASS}{{{_RANDOM_LENGTH + 1}}}", re.ASCII)

# GF(2^5) with the primitive polynomial x^5 + x^2 + 1.
_FIELD_MODULUS = 0b100101


def _double(x: int) -> int:
    """Multiply by 2 (the element ``x``) in GF(32)."""
    x <<= 1
    return x ^ _FIELD_MODULUS if x & 0b100000 else x


def _damm(symbols: str) -> int:
    """Fold ``interim ∘ symbol`` with ``a ∘ b = 2a + b`` (addition is XOR in GF(32))."""
    interim = 0
    for symbol in symbols:
        interim = _double(interim) ^ _VALUE[symbol]
    return interim


def _check_symbol(body: str) -> str:
    # interim ∘ c = 0  ⇔  2·interim + c = 0  ⇔  c = 2·interim (characteristic 2).
    return ALPHABET[_double(_damm(body))]


def _format(compact: str) -> str:
    tail = compact[4:]
    groups = [tail[i : i + _GROUP] for i in range(0, len(tail), _GROUP)]
    return "-".join([compact[:4], *groups])


def new_tracking_code(year: int) -> str:
    """Draw a fresh code for a case filed in ``year`` (four digits)."""
    if not 1000 <= year <= 9999:
        raise ValueError(f"el año debe tener cuatro dígitos (recibido {year})")
    body = f"{year}" + "".join(secrets.choice(ALPHABET) for _ in range(_RANDOM_LENGTH))
    return _format(body + _check_symbol(body))


def normalize_tracking_code(value: str) -> str:
    """Return the canonical code; accept lowercase, spaces, missing hyphens, ``O``/``I``/``L``.

    Raises ``ValueError`` (Spanish message) when the shape is wrong or the check symbol does not
    match, i.e. the code was mistyped.
    """
    compact = _IGNORED.sub("", value).upper().translate(_CONFUSIONS)
    if not _COMPACT.fullmatch(compact):
        raise ValueError(
            "código de seguimiento inválido: debe tener la forma AAAA-XXX-XXX-XXX "
            "(el año y nueve letras o dígitos, ej. 2025-7K3-M9Q-XD2)"
        )
    if _damm(compact) != 0:
        raise ValueError(
            "código de seguimiento mal escrito: revise cada carácter (el último es de control)"
        )
    return _format(compact)


def is_valid_tracking_code(value: str) -> bool:
    """Whether ``value`` normalizes to a well-formed code with a correct check symbol."""
    try:
        normalize_tracking_code(value)
    except ValueError:
        return False
    return True
