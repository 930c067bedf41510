"""Builds the fault-injecting PKCS#11 module (tests/native/faulty_pkcs11.c) with gcc.

A missing compiler or PKCS#11 header fails the test that needs the module: the
crash-isolation tests must not silently stop running.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "native" / "faulty_pkcs11.c"
P11_KIT_INCLUDE = Path("/usr/include/p11-kit-1")
HEADER = P11_KIT_INCLUDE / "p11-kit" / "pkcs11.h"


def build_faulty_module(out_dir: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the fault-injecting PKCS#11 module "
                    "(`apt-get install -y gcc`)", pytrace=False)
    if not HEADER.is_file():
        pytest.fail(f"{HEADER} is missing (`apt-get install -y libp11-kit-dev`)",
                    pytrace=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "libfaulty_pkcs11.so"
    argv = [gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", f"-I{P11_KIT_INCLUDE}",
            "-o", str(target), str(SOURCE), "-ldl"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"building {SOURCE.name} failed:\n{done.stderr}", pytrace=False)
    return target
