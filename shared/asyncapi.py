"""The AsyncAPI 3.0 document, generated from the contract, the routing-key table
(:mod:`shared.routing`) and the topology.

``docs/asyncapi.json`` is this output, committed; a test fails when it is stale.
"""

from __future__ import annotations

import json
from typing import Any

from shared.config import load_config
from shared.contract import EVENT_TYPES, EXCHANGE, Event
from shared.messaging import system_topology
from shared.routing import routes_of
from shared.settings import Settings

PUBLISHERS = {
    "system": "the Defensa311 services",
    "department": "the department <code>, with its own account (AMQP user_id)",
    "platform311": "the 311 platform",
}


def document(department_codes: list[str]) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name, model in EVENT_TYPES.items():
        schema = _schema(model, schemas)
        messages[name] = {
            "name": name,
            "contentType": "application/json",
            "payload": schema,
            "description": (model.__doc__ or "").strip() or name,
        }
        routes = routes_of(model)
        key = " | ".join(route.pattern.replace("*", "{department}") for route in routes)
        publishers = sorted({route.publisher for route in routes})
        inbound = publishers != ["system"]
        channel = f"{name}Channel"
        channels[channel] = {
            "address": key,
            "description": "; ".join(f"`{route.pattern}`: {route.description}" for route in routes)
            + ". Published by "
            + " or ".join(PUBLISHERS[p] for p in publishers)
            + "; a consumer dead-letters any other event type on these keys.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": EXCHANGE, "type": "topic", "durable": True},
                }
            },
        }
        operations[f"{'receive' if inbound else 'send'}{name}"] = {
            "action": "receive" if inbound else "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True}},
        }
    queues = {
        spec.name: {
            "bindings": list(spec.bindings),
            "type": "quorum",
            "dead_letter_queue": spec.dlq,
            "description": spec.description,
        }
        for spec in system_topology(department_codes)
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Defensa311 events",
            "version": "1.0.0",
            "description": (
                "Events of the Departamento Defensa del Usuario – 311 on the topic exchange "
                f"`{EXCHANGE}`. Bodies are JSON, persistent, message_id = event_id."
            ),
            "x-queues": queues,
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {"host": "127.0.0.1:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _schema(model: type[Event], shared_defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for def_name, definition in schema.pop("$defs", {}).items():
        shared_defs[def_name] = definition
    shared_defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def render(settings: Settings) -> str:
    config = load_config(settings.config)
    return json.dumps(document(config.department_codes), indent=2, ensure_ascii=False) + "\n"
