"""When a new case looks like an open one: the arithmetic, pure (no I/O).

Two reasons, each enough: the same category within a distance (default 50 m), or very similar
text among recent open cases (default the last 30 days). The search itself
(:mod:`shared.cases.duplicates`) prefilters in the database — a bounding box on the indexed
coordinates, trigram similarity on PostgreSQL — and confirms here.
"""

from __future__ import annotations

import math
import re
import unicodedata

EARTH_RADIUS_M = 6_371_008.8  # the mean radius (IUGG)
_METRES_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180
_WORD = re.compile(r"[^\W_]+")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The great-circle distance in metres between two points (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def bounding_box(lat: float, lon: float, metres: float) -> tuple[float, float, float, float]:
    """``(min_lat, max_lat, min_lon, max_lon)`` enclosing every point within ``metres``."""
    dlat = metres / _METRES_PER_DEGREE
    dlon = metres / (_METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-6))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def trigrams(text: str) -> frozenset[str]:
    """The text's trigrams as PostgreSQL's pg_trgm makes them: each word lowercased, padded
    with two spaces before and one after; accents folded so "huecó" meets "hueco"."""
    grams: set[str] = set()
    for word in _WORD.findall(_fold(text)):
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return frozenset(grams)


def similarity(a: str, b: str) -> float:
    """Shared trigrams over all trigrams (0–1), like pg_trgm's ``similarity``."""
    ta, tb = trigrams(a), trigrams(b)
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / len(ta | tb)


def distance_reason(metres: float) -> str:
    return f"misma categoría, a {metres:.0f} m"


def text_reason(score: float) -> str:
    return f"texto muy parecido ({score * 100:.0f} % de coincidencia)"
