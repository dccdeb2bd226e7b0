"""Django's own tasks test suite passes against cloudtask's django.tasks backend.

See tests/django_suite: the suite of the installed Django release (6.0's on 5.2, for the
backport), fetched from PyPI once, run by Django's test runner in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.django_suite.prepare import prepare
from tests.support import REPO_ROOT

pytestmark = pytest.mark.slow


def test_djangos_tasks_suite_passes_against_this_backend() -> None:
    suite = prepare()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(suite), str(REPO_ROOT)]),
        "DJANGO_SETTINGS_MODULE": "tests.django_suite.settings",
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "test", "tasks", "-v", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    ran = re.search(r"Ran (\d+) tests?", output)
    assert done.returncode == 0, output
    assert ran is not None
    assert int(ran.group(1)) >= 50, output
    assert "\nOK" in output, output
