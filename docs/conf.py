"""Sphinx configuration of the cloudtask documentation (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# autodoc imports the package, which needs Django configured.
settings.configure(
    SECRET_KEY="documentation-build-only",  # noqa: S106  (no secret: nothing is signed)
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cloudtask"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
)
django.setup()

project = "cloudtask"
copyright = "2026, cloudtask contributors"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = "cloudtask"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
nitpicky = False
