"""Helpers shared by the test modules: HTTP posts, backends, the emulator, OIDC, the worker."""

from pathlib import Path

#: The repository's root folder.
REPO_ROOT = Path(__file__).resolve().parents[2]
