"""Fetch Django's ``tests/tasks/`` for the installed release and adapt it to this backend."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django

from tests.support import REPO_ROOT

CACHE = REPO_ROOT / ".cache" / "django-suite"
FILES = (
    "__init__.py",
    "tasks.py",
    "test_tasks.py",
    "test_custom_backend.py",
    "test_immediate_backend.py",
)
#: Run unchanged (but for the backport's module names).
UNCHANGED = ("test_tasks.py", "test_custom_backend.py")
OURS = "cloudtask.django_tasks.CloudTaskBackend"

#: What test_immediate_backend.py says of Django's ImmediateBackend that differs here, each
#: with why. The backend runs tasks at once because CLOUDTASK["BACKEND"] is ImmediateBackend
#: in the suite's settings; SimpleTestCase allows no database, so results are not kept there
#: ("RESULTS": False), which is also what makes get_result() unsupported, as the tests expect.
ADAPTATIONS: list[tuple[str, str, str]] = [
    (
        "the backend's name",
        '"BACKEND": "django.tasks.backends.immediate.ImmediateBackend",',
        f'"BACKEND": "{OURS}", "OPTIONS": {{"RESULTS": False}},',
    ),
    (
        "the backend's class",
        "from django.tasks.backends.immediate import ImmediateBackend",
        "from cloudtask.django_tasks import CloudTaskBackend as ImmediateBackend",
    ),
    (
        "the options the suite's settings give it",
        "self.assertEqual(default_task_backend.options, {})",
        'self.assertEqual(default_task_backend.options, {"RESULTS": False})',
    ),
    (
        "run_after is supported (supports_defer): the test that it is refused is left out",
        "    def test_cannot_pass_run_after(self):",
        "    def _not_run_cannot_pass_run_after(self):",
    ),
    (
        "queue names are Cloud Tasks queue ids, which have no underscore",
        "unknown_queue",
        "unknown-queue",
    ),
    (
        "a push needs cloudtask's app, as any cloudtask push does",
        "    available_apps = []",
        '    available_apps = ["cloudtask"]',
    ),
]
#: Where the backport (django-tasks 0.12) or a Python before 3.12 words a message otherwise
#: than the Django 6.0 suite expects; nothing of this backend's is involved.
BACKPORT_WORDING: list[tuple[str, str]] = [
    ("Backend does not support async Tasks.", "Backend does not support async tasks."),
]
OLD_PYTHON_WORDING: list[tuple[str, str]] = [
    ("without an implementation for abstract method 'enqueue'", "with abstract method enqueue"),
]


def release() -> str:
    """Return the Django release whose suite applies: the installed one, or 6.0 for 5.2."""
    if django.VERSION[:2] >= (6, 0):
        return django.__version__
    return "6.0.*"  # the backport follows Django 6.0's django.tasks


def backport() -> bool:
    return django.VERSION[:2] < (6, 0)


def prepare() -> Path:
    """Return a directory holding the adapted ``tasks`` package, fetching it if needed."""
    # Per Python too: the wording adapted for the backport depends on the Python version.
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    target = CACHE / f"{django.__version__}-{python}" / "tasks"
    if all((target / name).exists() for name in FILES):
        return target.parent
    source = _download()
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        text = source[name]
        if name == "test_immediate_backend.py":
            text = _adapt(text)
        if backport():
            text = _for_backport(text)
        (target / name).write_text(text)
    return target.parent


def _download() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--ignore-requires-python",
            "-d",
            scratch,
            f"django=={release()}",
        ]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
        [archive] = Path(scratch).glob("*.tar.gz")
        found: dict[str, str] = {}
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if parts[1:3] == ["tests", "tasks"] and parts[-1] in FILES:
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    found[parts[-1]] = extracted.read().decode()
    missing = set(FILES) - set(found)
    if missing:
        raise RuntimeError(f"Django {release()} has no tests/tasks/{sorted(missing)}")
    return found


def _adapt(text: str) -> str:
    for why, old, new in ADAPTATIONS:
        if old not in text:
            raise RuntimeError(f"test_immediate_backend.py changed: cannot adapt {why}")
        text = text.replace(old, new)
    return text


def _for_backport(text: str) -> str:
    """Name the backport's modules and exceptions (its API is Django 6.0's)."""
    wording = BACKPORT_WORDING + (OLD_PYTHON_WORDING if sys.version_info < (3, 12) else [])
    for old, new in wording:
        text = text.replace(old, new)
    text = text.replace("django.tasks", "django_tasks")
    text = re.sub(r"\bInvalidTask\b", "InvalidTaskError", text)
    return re.sub(r"\bInvalidTaskBackend\b", "InvalidTaskBackendError", text)
