"""The names a file may have inside an ASiC-E container (EN 319 162-1): one rule for the
params check of a page's files (agent.protocol.params_asic) and for the worker's check of
a page's container (agent.formats.asic), kept apart from both layers (stdlib only)."""

from __future__ import annotations

META_INF = "META-INF/"
# A name a page may give a file, whatever the setting: the params refuse longer ones.
MAX_NAME_CHARS = 1024


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a data file of a container (None: it can).

    A name is a relative path of '/'-separated segments: no leading '/', no '\\' (Windows
    would read it as a separator), no drive letter, no empty, '.' or '..' segment, no
    control characters, and nothing under META-INF/ or called mimetype, which the
    container itself uses.  Extracted anywhere, such a name stays inside the folder."""
    if not name:
        return "is empty"
    if name.startswith("/"):
        return "starts with '/'"
    if "\\" in name:
        return "contains '\\'"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "contains control characters"
    if len(name) >= 2 and name[1] == ":":
        return "starts with a drive letter"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' segment"
    if name.upper().startswith(META_INF) or name.upper() == META_INF.rstrip("/"):
        return "is under META-INF/, which holds the signatures"
    if name == "mimetype":
        return "is the container's own mimetype entry"
    return None
