"""Rendering Open311 documents as JSON or XML (``xml.etree``), errors included.

A document is plain data (dicts, lists, scalars). In XML a list becomes one element per item,
named after its container (``services`` → ``service``); ``None`` is an empty element and a
boolean is ``true``/``false``. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.responses import Response

FORMATS = ("json", "xml")
MEDIA_TYPES = {"json": "application/json", "xml": "text/xml; charset=utf-8"}

# Container name → the element name of each of its items.
ITEM_TAGS = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "attributes": "attribute",
    "values": "value",
}


@dataclass(frozen=True)
class Problem:
    """One entry of an Open311 error list; ``status`` is the HTTP status it answers with."""

    status: int
    description: str


class Open311Error(Exception):
    def __init__(self, status: int, *descriptions: str) -> None:
        super().__init__("; ".join(descriptions))
        self.problems = [Problem(status, d) for d in descriptions]
        self.status = status


def w3c(value: datetime | None, tz: ZoneInfo) -> str | None:
    """W3C datetime with the institution's offset, e.g. ``2025-03-10T09:00:00-05:00``."""
    if value is None:
        return None
    return value.astimezone(tz).replace(microsecond=0).isoformat()


# What XML 1.0 cannot carry at all, not even as a character reference (ElementTree escapes
# the rest). Input refuses these (shared.validation.control_character); a value stored before
# that rule must still not make the whole document unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("", str(value))


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _append(element, str(key), child)
    else:
        element.text = _text(value)


def _append(parent: ET.Element, tag: str, value: Any) -> None:
    element = ET.SubElement(parent, tag)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        item_tag = ITEM_TAGS.get(tag, "item")
        for item in value:
            _fill(ET.SubElement(element, item_tag), item)
    else:
        _fill(element, value)


def to_xml(root: str, document: Any) -> bytes:
    """Serialize ``document`` under ``<root>`` (a list gives one child per item)."""
    element = ET.Element(root)
    if isinstance(document, Sequence) and not isinstance(document, str | bytes):
        item_tag = ITEM_TAGS.get(root, "item")
        for item in document:
            _fill(ET.SubElement(element, item_tag), item)
    else:
        _fill(element, document)
    body: bytes = ET.tostring(element, encoding="utf-8", xml_declaration=True)
    return body


def render(fmt: str, root: str, document: Any, status: int = 200) -> Response:
    if fmt == "xml":
        body = to_xml(root, document)
    else:
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status, media_type=MEDIA_TYPES[fmt])


def render_errors(fmt: str, error: Open311Error) -> Response:
    # Codes are emitted as strings, like every other code and id in this API.
    document = [{"code": str(p.status), "description": p.description} for p in error.problems]
    return render(fmt if fmt in FORMATS else "json", "errors", document, error.status)
