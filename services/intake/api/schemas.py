"""Request and response bodies of the HTTP API (pydantic; error messages in Spanish).

The filing body *is* the contract's :class:`~shared.contract.Submission` plus the channel,
so HTTP, 311 over AMQP and Open311 share one set of field rules; the law's rules
(:func:`~shared.contract.law_errors`) are applied on top by :func:`filing_errors`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contract import Channel, FieldError, Kind, ShortText, Submission, law_errors
from shared.domain.actions import REGISTRY
from shared.paging import MAX_PAGE_SIZE


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FilingRequest(Submission):
    """``POST /api/v1/cases``: a submission and the door it came through."""

    channel: Channel = Field(
        description=(
            "presencial (requiere token de personal), web (público) o 311 "
            "(requiere token platform311 y external_ref)"
        )
    )
    external_ref: ShortText | None = Field(
        default=None, description="el ticket del 311; solo para el canal 311"
    )

    def submission(self) -> Submission:
        return Submission.model_validate(self.model_dump(include=set(Submission.model_fields)))


def filing_errors(request: FilingRequest) -> list[FieldError]:
    """The law's rules and the channel's own, on top of the field formats."""
    errors = law_errors(request)
    if request.channel == "311" and not request.external_ref:
        errors.append(
            FieldError(
                field="external_ref",
                rule="required_for_channel",
                message="campo obligatorio para el canal 311 (el ticket del 311)",
            )
        )
    if request.channel != "311" and request.external_ref:
        errors.append(
            FieldError(
                field="external_ref",
                rule="only_channel_311",
                message="solo un caso del canal 311 lleva external_ref",
            )
        )
    return errors


class Filed(BaseModel):
    case_id: str
    tracking_code: str
    state: str
    received_at: datetime
    due_at: datetime


# ---------------------------------------------------------------------------- actions


def actions_openapi() -> dict[str, Any]:
    """The request body of the action endpoint, documented per action from the registry."""
    described = "; ".join(
        f"{name} {{{', '.join(spec.body.model_fields)}}}" for name, spec in REGISTRY.items()
    )
    return {
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"title": name, **spec.body.model_json_schema()}
                            for name, spec in REGISTRY.items()
                        ]
                    }
                },
                # A department's answer with its documents: one request, stored together.
                "multipart/form-data": {
                    "schema": {
                        "title": "respond con adjuntos",
                        "type": "object",
                        "required": ["response"],
                        "properties": {
                            "response": {"type": "string"},
                            "adjuntos": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "fotos JPEG, PNG o WebP, o documentos PDF",
                            },
                        },
                    }
                },
            },
            "description": f"Según la acción: {described}. La respuesta de una dependencia "
            "(respond) puede llevar archivos: multipart/form-data con response y adjuntos.",
        }
    }


class ListFilters(_Body):
    """``GET /api/v1/cases`` query."""

    state: (
        Literal[
            "received",
            "classified",
            "inspection",
            "remitted",
            "on_agenda",
            "resolved",
            "closed",
            "reconsideration",
            "appeal",
        ]
        | None
    ) = None
    kind: Kind | None = None
    channel: Channel | None = None
    department: str | None = Field(default=None, max_length=32)
    overdue: bool | None = None
    # Staff search (shared/search.py): words of a name, identity number, e-mail, phone,
    # tracking code, 311 ticket, description or address.
    q: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)
    # Bounded so that no offset overflows the database's integer (a deeper page is a probe).
    offset: int = Field(default=0, ge=0, le=1_000_000)
    # Keyset paging: the next_cursor of the previous page (then offset must be 0).
    cursor: str | None = Field(default=None, max_length=200)
