"""Writes docs/configuration.md from the config models, so the reference cannot drift.

    python -m agent.config_doc > docs/configuration.md
"""

from __future__ import annotations

import json
from typing import get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from agent.config import Config

INTRO = """\
# Configuration

imza-agent reads one TOML file: `--config FILE` (before or after the command), else
`~/.config/imza-agent/config.toml` (`$XDG_CONFIG_HOME`) when it exists; `imza-agent config
path|show|edit` finds, prints and edits it (see [cli.md](cli.md)). Every key is
optional and no file at all is a valid configuration; unknown keys are refused, so a typo
never leaves a default silently in force. Relative paths are relative to the file.

User data (the demo identity, grants, the journal, TLS material) lives in the platform's
user data directory (`~/.local/share/imza-agent` on Linux), or in `$IMZA_AGENT_HOME`.
Administrators restrict which sites may connect with the system policy file
(see [policy.md](policy.md)), not with this file.

This page is generated from the code: `python -m agent.config_doc > docs/configuration.md`.
"""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    # No factory here reads the other fields: an empty ``validated_data`` is enough.
    value: object = info.get_default(call_default_factory=True, validated_data={})
    if isinstance(value, BaseModel):
        return "—"
    if value is None:
        return "(unset)"
    return f"`{json.dumps(value, default=str, ensure_ascii=False)}`"


def _section(heading: str, model: type[BaseModel], lines: list[str]) -> None:
    lines += ["", heading, "", "| key | default | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        lines.append(f"| `{name}` | {_default(info)} | {info.description or ''} |")


def render() -> str:
    lines = [INTRO.rstrip()]
    for name, info in Config.model_fields.items():
        section = info.annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        _section(f"## `[{name}]`", section, lines)
        for sub_name, sub_info in section.model_fields.items():
            # lists of tables, e.g. [[tokens.pkcs12]]
            for arg in get_args(sub_info.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    _section(f"## `[[{name}.{sub_name}]]` (repeatable)", arg, lines)
    lines += ["", "## Example", "", "```toml", EXAMPLE.strip(), "```", ""]
    return "\n".join(lines)


EXAMPLE = """
[server]
wss_port = 29170
ws_enabled = false                  # only TLS
dev_origins = ["http://localhost:8000"]

[tokens]
modules = ["/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"]
call_timeout = 20

[[tokens.pkcs12]]
path = "~/keys/company-seal.p12"
label = "Company seal"

[ui]
language = "az"
dialog_timeout = 90
"""


if __name__ == "__main__":
    print(render(), end="")
