"""@task is typed with ParamSpec: mypy checks the arguments of add(a=1).delay()."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).parent / "typing_cases" / "calls.py"


@pytest.mark.slow
def test_mypy_checks_task_call_arguments(tmp_path: Path) -> None:
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\nignore_missing_imports = True\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--no-incremental",
            str(CASES),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    reported = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"calls\.py:(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.M)
    }
    expected = {
        number: re.search(r"# E: \[([a-z-]+)\]", line).group(1)  # type: ignore[union-attr]
        for number, line in enumerate(CASES.read_text().splitlines(), start=1)
        if "# E:" in line
    }
    assert reported == expected, result.stdout
