"""Structured JSON logs: one line an event, never personal data.

Callers log ids (case id, tracking code, event id) and pass them in ``extra``; the
formatter keeps only whitelisted extra keys so a stray object cannot leak a cédula.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

SAFE_KEYS = frozenset(
    {
        "service", "queue", "event_id", "event_type", "message_id", "case_id",
        "tracking_code", "reason", "error", "state", "action", "department", "count",
        "clock", "channel", "status", "notification_id", "route", "rule", "elapsed_ms",
        "path", "method", "status_code", "recipient",
    }
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in SAFE_KEYS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "uvicorn.access", "faststream", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
