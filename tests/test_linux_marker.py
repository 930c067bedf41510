"""No test that needs Linux (or POSIX) can slip into the Windows or macOS CI job.

Those jobs (.github/workflows/windows.yml, macos.yml) run ``pytest -m "not ($NOT_HERE)"``.
A scan of tests/ finds what only Linux has (/proc, setpriv, ps, XDG paths) or only POSIX
has (fcntl, pwd, Unix sockets, POSIX signals, fork, shebang scripts) in each test, directly
or through a helper, fixture or module-level name it uses (also one imported from another
module under tests/), and fails unless the test carries a marker that job excludes.

It also fails on a POSIX-only import or call evaluated at import time: pytest imports a
module before it deselects its tests, so that would break collection on Windows whatever
the markers say.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent
WORKFLOWS = TESTS.parent / ".github" / "workflows"

POSIX_MODULES = {"fcntl", "termios", "pwd", "grp", "resource", "posix", "tty", "pty", "syslog"}
POSIX_ATTRS = {
    "os": {"getuid", "geteuid", "getgid", "getegid", "fork", "forkpty", "setsid", "killpg",
           "getpgid", "getsid", "setpgrp", "pwrite", "pread", "mkfifo", "WNOHANG",
           "O_NOFOLLOW", "sysconf", "getloadavg", "setuid", "setgid", "chown"},
    "signal": {"SIGKILL", "SIGSTOP", "SIGCONT", "SIGHUP", "SIGXCPU", "SIGUSR1", "SIGUSR2",
               "SIGCHLD", "SIGALRM", "SIGQUIT", "SIGPIPE", "pthread_kill", "setitimer",
               "alarm"},
    "socket": {"AF_UNIX"},
    "asyncio": {"open_unix_connection", "start_unix_server"},
}
POSIX_METHODS = {"create_unix_connection", "create_unix_server"}  # on any event loop
POSIX_KEYWORDS = {"preexec_fn", "start_new_session", "pass_fds"}  # subprocess
# A program's name as the first item of an argument list.
PROGRAMS = {"setpriv": "linux", "runuser": "linux", "ps": "linux", "chroot": "linux",
            "unshare": "linux", "sh": "posix", "bash": "posix", "/bin/sh": "posix",
            "/bin/bash": "posix", "su": "posix", "sudo": "posix"}


def _string_kind(text: str) -> str | None:
    if text == "/proc" or text.startswith(("/proc/", "/dev/shm", "/run/user")):
        return "linux"
    if "x86_64-linux-gnu" in text or text.startswith("/usr/bin:"):
        return "linux"  # Debian's multiarch library paths; a PATH of Linux directories
    if text.startswith("XDG_") and text.isupper():
        return "linux"  # platformdirs reads XDG_* on Linux only
    if text.startswith("#!"):
        return "posix"  # a script run through its shebang
    return None


CHILD_CODE = re.compile(r"^\s*(import|from) (fcntl|resource|pwd|grp|termios|pty)\b", re.M)


def _call_uses(call: ast.Call) -> list[Use]:
    func = ast.unparse(call.func)
    if func == "os.kill" and len(call.args) == 2 and ast.unparse(call.args[1]) == "0":
        return [Use("posix", "os.kill(pid, 0)", call.lineno)]  # Windows: CTRL_C_EVENT
    if func.endswith(DATA_CALLS):
        return []  # a sample written or parsed, not run
    # Python code handed to a child process (python -c) or a helper that runs it
    return [Use("posix", "child code imports a POSIX module", call.lineno)
            for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
            and CHILD_CODE.search(a.value)]


@dataclass
class Use:
    kind: str  # "linux" or "posix"
    what: str
    line: int


@dataclass
class Unit:
    """A module-level function, class or assignment: what it uses, what names it refers to."""

    uses: list[Use] = field(default_factory=list)
    refs: set[str] = field(default_factory=set)  # names (and module.attr) it refers to
    params: set[str] = field(default_factory=set)  # fixtures it asks for
    markers: set[str] = field(default_factory=set)
    is_test: bool = False
    at_import: bool = False  # evaluated when the module is imported


def _markers(decorators: list[ast.expr]) -> set[str]:
    found = set()
    for d in decorators:
        text = ast.unparse(d)
        found.update(re.findall(r"pytest\.mark\.(\w+)", text))
    return found


DATA_CALLS = ("write_text", "write", "parse", "startswith", "endswith")  # strings as data


def _direct_uses(node: ast.AST) -> list[Use]:
    uses = []
    data = {id(a) for n in ast.walk(node) if isinstance(n, ast.Call)
            and ast.unparse(n.func).endswith(DATA_CALLS) for a in ast.walk(n)
            if isinstance(a, ast.Constant)}
    for n in ast.walk(node):
        if id(n) in data and not str(getattr(n, "value", "")).startswith("#!"):
            continue  # (a script written with its shebang is there to be run)
        line = getattr(n, "lineno", 0)
        if isinstance(n, ast.Import):
            uses += [Use("posix", f"import {a.name}", line) for a in n.names
                     if a.name.split(".")[0] in POSIX_MODULES]
        elif isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in POSIX_MODULES:
            uses.append(Use("posix", f"import {n.module}", line))
        elif isinstance(n, ast.Attribute):
            if isinstance(n.value, ast.Name) and n.attr in POSIX_ATTRS.get(n.value.id, ()):
                uses.append(Use("posix", f"{n.value.id}.{n.attr}", line))
            elif n.attr in POSIX_METHODS:
                uses.append(Use("posix", f".{n.attr}", line))
            elif n.attr == "st_mode":  # Windows has no permission bits to check
                uses.append(Use("posix", ".st_mode", line))
        elif isinstance(n, ast.Call):
            uses += _call_uses(n)
        elif isinstance(n, ast.keyword) and n.arg in POSIX_KEYWORDS:
            if not (isinstance(n.value, ast.Constant) and n.value.value in (False, None)):
                uses.append(Use("posix", f"{n.arg}=", n.value.lineno))
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            kind = _string_kind(n.value)
            if kind:
                uses.append(Use(kind, repr(n.value[:40]), line))
        elif isinstance(n, ast.List | ast.Tuple) and n.elts:
            first = n.elts[0]
            if (isinstance(first, ast.Constant) and isinstance(first.value, str)
                    and first.value in PROGRAMS):
                uses.append(Use(PROGRAMS[first.value], f"runs {first.value}", line))
    return uses


def _refs(node: ast.AST) -> set[str]:
    refs = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            refs.add(n.id)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
            refs.add(f"{n.value.id}.{n.attr}")
    return refs


def _function_unit(fn: ast.FunctionDef | ast.AsyncFunctionDef, extra: set[str]) -> Unit:
    args = fn.args
    params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    # pytest.mark.usefixtures("name") asks for a fixture too
    for d in fn.decorator_list:
        if "usefixtures" in ast.unparse(d) and isinstance(d, ast.Call):
            params |= {a.value for a in d.args if isinstance(a, ast.Constant)}
    return Unit(uses=_direct_uses(fn), refs=_refs(fn), params=params,
                markers=_markers(fn.decorator_list) | extra,
                is_test=fn.name.startswith("test"))


@dataclass
class Module:
    name: str
    units: dict[str, list[Unit]] = field(default_factory=dict)  # by the name it binds
    tests: list[tuple[str, Unit]] = field(default_factory=list)
    markers: set[str] = field(default_factory=set)  # pytestmark
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (mod, attr)
    at_import: list[Use] = field(default_factory=list)


def _pytestmark(tree: ast.Module | ast.ClassDef) -> set[str]:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets):
            return set(re.findall(r"pytest\.mark\.(\w+)", ast.unparse(stmt.value)))
    return set()


def parse_module(name: str, source: str) -> Module:
    tree = ast.parse(source)
    module = Module(name, markers=_pytestmark(tree))
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            unit = _function_unit(stmt, set())
            module.units.setdefault(stmt.name, []).append(unit)
            if unit.is_test:
                module.tests.append((stmt.name, unit))
            # decorators and defaults run at import
            for d in [*stmt.decorator_list, *stmt.args.defaults]:
                module.at_import += [u for u in _direct_uses(d) if u.kind == "posix"
                                     and not u.what.startswith(("'", '"', "runs"))]
        elif isinstance(stmt, ast.ClassDef):
            class_marks = _markers(stmt.decorator_list) | _pytestmark(stmt)
            whole = Unit(uses=_direct_uses(stmt), refs=_refs(stmt))
            module.units.setdefault(stmt.name, []).append(whole)
            for item in stmt.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    unit = _function_unit(item, class_marks)
                    if unit.is_test and stmt.name.startswith("Test"):
                        unit.refs.add(stmt.name)  # its fixtures and helpers live there
                        module.tests.append((f"{stmt.name}::{item.name}", unit))
                else:
                    module.at_import += [u for u in _direct_uses(item) if u.kind == "posix"
                                         and not u.what.startswith(("'", '"', "runs"))]
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            module.at_import += _direct_uses(stmt)
            if isinstance(stmt, ast.Import):
                for a in stmt.names:
                    module.imports[a.asname or a.name] = (a.name.split(".")[-1], None)
            elif stmt.module and not stmt.level:
                for a in stmt.names:
                    module.imports[a.asname or a.name] = (stmt.module.split(".")[-1], a.name)
        else:
            uses = _direct_uses(stmt)
            # what a statement evaluates at import: calls and attributes, not strings
            module.at_import += [u for u in uses if u.kind == "posix"
                                 and not u.what.startswith(("'", '"', "runs"))]
            targets = [n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)
                       and isinstance(n.ctx, ast.Store)]
            for t in targets:
                module.units.setdefault(t, []).append(Unit(uses=uses, refs=_refs(stmt)))
    return module


def _code_only(uses: list[Use]) -> list[Use]:
    """What another module's name brings along: its code, not the strings in its tables."""
    return [u for u in uses if not u.what.startswith(("'", '"'))]


class Index:
    """Every module under tests/ (helpers too), with what each name uses, transitively."""

    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.cache: dict[tuple[str, str], list[Use]] = {}

    def uses_of(self, module: str, name: str, seen: set[tuple[str, str]] | None = None,
                ) -> list[Use]:
        key = (module, name)
        if key in self.cache:
            return self.cache[key]
        seen = seen if seen is not None else set()
        if key in seen or module not in self.modules:
            return []
        seen.add(key)
        mod = self.modules[module]
        found: list[Use] = []
        if "." in name:  # module.attr through an import
            head, attr = name.split(".", 1)
            target = mod.imports.get(head)
            if target and target[1] is None:
                found += _code_only(self.uses_of(target[0], attr, seen))
        elif name in mod.units:
            for unit in mod.units[name]:
                found += self._unit_uses(module, unit, seen)
        elif name in mod.imports and mod.imports[name][1]:
            src, attr = mod.imports[name]
            found += _code_only(self.uses_of(src, attr or name, seen))
        self.cache[key] = found
        return found

    def _unit_uses(self, module: str, unit: Unit, seen: set[tuple[str, str]]) -> list[Use]:
        found = list(unit.uses)
        for ref in sorted(unit.refs | unit.params):
            found += self.uses_of(module, ref, seen)
        for param in sorted(unit.params):  # a fixture from conftest.py
            if param not in self.modules[module].units and param not in self.modules[
                    module].imports:
                found += self.uses_of("conftest", param, seen)
        return found

    def test_uses(self, module: str, unit: Unit) -> list[Use]:
        return self._unit_uses(module, unit, set())


def not_here(workflow: Path) -> set[str]:
    """The markers a workflow's NOT_HERE excludes."""
    match = re.search(r'NOT_HERE:\s*"([^"]+)"', workflow.read_text(encoding="utf-8"))
    assert match, f"{workflow.name}: no NOT_HERE"
    return {m.strip() for m in match.group(1).split(" or ")}


def unmarked(index: Index, module: str, excluded: set[str], kinds: set[str]) -> list[str]:
    """Tests of a module that use something of ``kinds`` and carry no ``excluded`` marker."""
    mod = index.modules[module]
    problems = []
    for name, unit in mod.tests:
        if (unit.markers | mod.markers) & excluded:
            continue
        uses = [u for u in index.test_uses(module, unit) if u.kind in kinds]
        if uses:
            shown = ", ".join(sorted({f"{u.what} ({u.kind})" for u in uses})[:4])
            problems.append(f"{module}.py::{name} uses {shown}")
    return problems


def import_time_problems(mod: Module) -> list[str]:
    return [f"{mod.name}.py:{u.line} {u.what} runs at import (collection fails on Windows"
            " before -m deselects anything): move it into the function that needs it"
            for u in mod.at_import if u.kind == "posix"]


def load_index() -> Index:
    modules = {}
    for path in sorted(TESTS.rglob("*.py")):
        # this module names the constructs as data; it uses none of them
        if "node_modules" in path.parts or path == Path(__file__).resolve():
            continue
        modules[path.stem] = parse_module(path.stem, path.read_text(encoding="utf-8"))
    return Index(modules)


HOW = ("mark it @pytest.mark.linux (needs Linux itself) or @pytest.mark.posix (any POSIX "
       "system), per test or in the module's pytestmark (docs/testing.md)")


def test_the_workflows_exclude_linux_and_posix() -> None:
    assert "linux" in not_here(WORKFLOWS / "macos.yml")
    assert {"linux", "posix"} <= not_here(WORKFLOWS / "windows.yml")


def test_no_linux_only_test_runs_on_windows() -> None:
    index = load_index()
    excluded = not_here(WORKFLOWS / "windows.yml")
    problems = [p for m in index.modules if m.startswith("test_")
                for p in unmarked(index, m, excluded, {"linux", "posix"})]
    assert problems == [], "\n".join(["these tests cannot run on Windows; " + HOW, *problems])


def test_no_linux_only_test_runs_on_macos() -> None:
    index = load_index()
    excluded = not_here(WORKFLOWS / "macos.yml")
    problems = [p for m in index.modules if m.startswith("test_")
                for p in unmarked(index, m, excluded, {"linux"})]
    assert problems == [], "\n".join(["these tests cannot run on macOS; " + HOW, *problems])


def test_every_module_under_tests_imports_on_windows() -> None:
    problems = [p for m in load_index().modules.values() for p in import_time_problems(m)]
    assert problems == [], "\n".join(problems)


SAMPLE_HELPER = '''
import subprocess
def holder_as(user):
    return subprocess.run(["setpriv", "--reuid", user, "true"])
'''

SAMPLE = '''
import os, signal, socket
import pytest
from helper import holder_as

pytestmark = [pytest.mark.msi]

def _status():
    return open("/proc/self/status").read()

@pytest.fixture
def unix_pair():
    return socket.socket(socket.AF_UNIX)

def test_reads_proc():
    assert _status()

def test_pair(unix_pair):
    assert unix_pair

def test_second_user():
    holder_as("nobody")

@pytest.mark.posix
def test_stops(pid=1):
    os.kill(pid, signal.SIGSTOP)

@pytest.mark.linux
def test_marked():
    assert _status()

def test_plain():
    assert os.getpid()

class TestGroup:
    def test_kill(self):
        os.kill(1, signal.SIGKILL)
'''


def _sample_index(source: str) -> Index:
    return Index({"test_sample": parse_module("test_sample", source),
                  "helper": parse_module("helper", SAMPLE_HELPER)})


def test_the_guard_fails_on_unmarked_linux_tests() -> None:
    index = _sample_index(SAMPLE.replace("pytestmark = [pytest.mark.msi]", ""))
    on_windows = unmarked(index, "test_sample", {"msi", "linux", "posix"}, {"linux", "posix"})
    assert [p.split(" uses ")[0] for p in on_windows] == [
        "test_sample.py::test_reads_proc", "test_sample.py::test_pair",
        "test_sample.py::test_second_user", "test_sample.py::TestGroup::test_kill"]
    assert "'/proc/self/status' (linux)" in on_windows[0]
    assert "socket.AF_UNIX (posix)" in on_windows[1]
    assert "runs setpriv (linux)" in on_windows[2]
    # macOS has POSIX: only what needs Linux itself, and the posix-marked test is Linux-free
    on_macos = unmarked(index, "test_sample", {"msi", "linux"}, {"linux"})
    assert [p.split(" uses ")[0] for p in on_macos] == [
        "test_sample.py::test_reads_proc", "test_sample.py::test_second_user"]


def test_a_component_marker_the_job_excludes_covers_the_module() -> None:
    index = _sample_index(SAMPLE)
    assert unmarked(index, "test_sample", {"msi", "linux", "posix"}, {"linux", "posix"}) == []
    assert unmarked(index, "test_sample", {"softhsm"}, {"linux", "posix"}) != []


def test_an_import_time_posix_call_is_a_problem_whatever_the_markers() -> None:
    mod = parse_module("test_sample", "import pytest\nimport pwd\nimport os\n"
                       "pytestmark = [pytest.mark.linux]\nUID = os.getuid()\n"
                       "PROC = '/proc/self'\ndef test_x():\n    import fcntl\n")
    assert [p.split(" runs at import")[0] for p in import_time_problems(mod)] == [
        "test_sample.py:2 import pwd", "test_sample.py:5 os.getuid"]
