"""The common base of every wire model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors.

    ``populate_by_name`` lets handlers build results with Python names; frames from the
    wire are validated by alias only (``by_name=False``, see ``dispatch.py``), so a portal
    that sends ``hash_algorithm`` gets a clear -32602 instead of silent acceptance.
    """

    # defer_build: a model's validator and serializer are built at its first use, not at
    # import. The daemon imports every method's models before it listens; building them
    # all then cost start-up time and idle memory (issue 17) for methods a session may
    # never call. Validation itself is the same.
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True, use_enum_values=False,
                              defer_build=True)

    def to_wire(self) -> dict[str, object]:
        """JSON-ready dict: camelCase names, base64 strings, absent optionals omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
