"""One JSON Schema (draft 2020-12) for every message of the protocol, built from the
models so it cannot disagree with what the agent accepts.

    python -m agent.protocol.schema > docs/protocol.schema.json

A test compares the committed file with this output.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic.json_schema import models_json_schema

from agent import PROTOCOL_VERSION
from agent.protocol.base import WireModel
from agent.protocol.catalog import METHODS, NOTIFICATIONS
from agent.protocol.jsonrpc import MAX_ID_CHARS
from agent.protocol.results import ErrorObject

SCHEMA_ID = f"https://imza-agent.invalid/protocol/v{PROTOCOL_VERSION}/schema.json"
_REF = "#/$defs/{model}"


def _pascal(method: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[._]", method))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def build_schema() -> dict[str, Any]:
    models: list[type[WireModel]] = [ErrorObject]
    for spec in METHODS.values():
        models += [spec.params, spec.result]
    models += list(NOTIFICATIONS.values())
    unique = list(dict.fromkeys(models))
    refs, generated = models_json_schema([(m, "validation") for m in unique], by_alias=True,
                                         ref_template=_REF)
    defs: dict[str, Any] = dict(generated.get("$defs", {}))

    def model_ref(model: type[WireModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    msg_id = {"anyOf": [{"type": "string", "maxLength": MAX_ID_CHARS},
                        {"type": "integer", "minimum": -(2**53 - 1),
                         "maximum": 2**53 - 1}]}
    defs["Id"] = msg_id

    requests, results = [], []
    for spec in METHODS.values():
        name = _pascal(spec.name)
        params_required = bool(spec.params.model_json_schema().get("required"))
        defs[f"{name}Request"] = {
            "type": "object",
            "description": spec.summary,
            "properties": {"jsonrpc": {"const": "2.0"}, "id": _ref("Id"),
                           "method": {"const": spec.name}, "params": model_ref(spec.params)},
            "required": ["jsonrpc", "id", "method"] + (["params"] if params_required else []),
            "additionalProperties": False,
        }
        requests.append(_ref(f"{name}Request"))
        results.append(model_ref(spec.result))

    notifications = []
    for method, model in NOTIFICATIONS.items():
        name = _pascal(method)
        defs[f"{name}Notification"] = {
            "type": "object",
            "properties": {"jsonrpc": {"const": "2.0"}, "method": {"const": method},
                           "params": model_ref(model)},
            "required": ["jsonrpc", "method", "params"],
            "additionalProperties": False,
        }
        notifications.append(_ref(f"{name}Notification"))

    defs["Request"] = {"oneOf": requests}
    defs["SuccessResponse"] = {
        "type": "object",
        "properties": {"jsonrpc": {"const": "2.0"}, "id": _ref("Id"),
                       "result": {"anyOf": results}},
        "required": ["jsonrpc", "id", "result"], "additionalProperties": False,
    }
    defs["ErrorResponse"] = {
        "type": "object",
        "properties": {"jsonrpc": {"const": "2.0"},
                       "id": {"anyOf": [_ref("Id"), {"type": "null"}]},
                       "error": model_ref(ErrorObject)},
        "required": ["jsonrpc", "id", "error"], "additionalProperties": False,
    }
    defs["Notification"] = {"oneOf": notifications}

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"imza-agent wire protocol, version {PROTOCOL_VERSION}",
        "description": "Any one frame, either direction. Generated from agent/protocol by "
                       "`python -m agent.protocol.schema`; do not edit by hand.",
        "anyOf": [_ref("Request"), _ref("SuccessResponse"), _ref("ErrorResponse"),
                  _ref("Notification")],
        "x-methods": {spec.name: {"params": model_ref(spec.params),
                                  "result": model_ref(spec.result)}
                      for spec in METHODS.values()},
        "$defs": dict(sorted(defs.items())),
    }


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_schema())
