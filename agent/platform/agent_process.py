"""Whether a process runs ``imza-agent run`` (``Platform.agent_process``): the rule on a
command line, shared by Linux (``/proc/<pid>/cmdline``, here) and macOS (sysctl
KERN_PROCARGS2: macos/procargs.py). Windows shows the program's image only
(windows/image_name.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath

PROC = Path("/proc")


def agent_argv(argv: Sequence[str]) -> bool:
    """``python -m agent.cli … run``, or the installed ``imza-agent`` program with ``run``
    (a frozen build's executable is named ``imza-agent`` too)."""
    ours = any(a == "agent.cli" or PurePath(a).name == "imza-agent" for a in argv)
    return ours and "run" in argv


def proc_agent_process(pid: int, proc: Path = PROC) -> bool | None:
    """Linux: from ``/proc/<pid>/cmdline``. None: no /proc mounted here (a Unix without
    one, or a container that hides it), so nothing can be told; False: no such process, or
    one this user may not look at (``hidepid``), which is no agent of this user's."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except FileNotFoundError:
        return False if (proc / "self").exists() else None
    except OSError:
        return False
    # NUL-separated; a zombie's or a kernel thread's is empty (no agent then).
    return agent_argv([a.decode("utf-8", "replace") for a in raw.split(b"\0") if a])
