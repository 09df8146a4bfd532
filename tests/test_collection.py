"""The suite's own collection checks (tests/conftest.py) and helpers work."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import module_infos

EMPTY_CASES = """
import pytest

@pytest.mark.parametrize("case", (c for c in []))  # a generator with nothing in it
def test_empty(case):
    pass

def test_fine():
    pass
"""


def test_an_empty_parameter_set_fails_the_run(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_empty.py").write_text(EMPTY_CASES)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "test_empty[NOTSET]" in proc.stdout and "empty parameter set" in proc.stdout
    assert "1 passed, 1 error" in proc.stdout


def test_module_infos_reads_a_generator_once():
    infos = module_infos(f"nn.Conv{d}d" for d in (1, 2, 3))
    assert [info.name for info in infos] == ["nn.Conv1d", "nn.Conv2d", "nn.Conv3d"]
