"""The test suite's root: shared fixture plugins, and the documentation's examples as tests.

Every ``python`` code block of README.md and docs/ runs (Sybil), in order, one namespace per
document, against the test settings (ImmediateBackend: a push runs the task at once) and a
test database. Examples that import from ``shop.tasks`` get the tasks their document defined:
the document is that module while it runs. Invisible set-up blocks change settings and the
environment with ``docs_configure(...)`` and ``docs_setenv(...)``, undone when the document
ends (pytest's own fixtures would undo them after each example).
"""

from __future__ import annotations

import os
import sys
import types
from contextlib import ExitStack
from typing import Any

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser as MarkdownPython
from sybil.parsers.markdown import SkipParser as MarkdownSkip
from sybil.parsers.myst import PythonCodeBlockParser as MystPython
from sybil.parsers.myst import SkipParser as MystSkip

# Shared fixtures: the Cloud Tasks emulator's (emulator, quiet_emulator, task_endpoint, ...)
# and OIDC's (certs_server, development_key_dir).
pytest_plugins = [
    "tests.support.emulator",
    "tests.support.oidc",
    "tests.support.postgres",
    "tests.support.scheduler",
    "tests.support.worker",
]

#: The module the documentation's examples play: "# shop/tasks.py" in the text.
EXAMPLE_MODULE = "shop.tasks"


class _DocumentModule(types.ModuleType):
    """``shop.tasks`` while a document runs: its names are the document's namespace."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        super().__init__(EXAMPLE_MODULE)
        self._namespace = namespace

    def __getattr__(self, name: str) -> Any:
        try:
            return self._namespace[name]
        except KeyError:
            raise AttributeError(name) from None


def _setup(namespace: dict[str, Any]) -> None:
    from django.test import override_settings

    from cloudtask import conf
    from cloudtask.registry import registry

    stack = ExitStack()
    stack.enter_context(registry.isolated())

    def docs_configure(**changes: Any) -> None:
        """Change CLOUDTASK for the rest of the document."""
        stack.enter_context(override_settings(CLOUDTASK={**conf.user_settings(), **changes}))

    def docs_setenv(name: str, value: str) -> None:
        """Set an environment variable for the rest of the document."""
        previous = os.environ.get(name)
        os.environ[name] = value
        stack.callback(
            lambda: (
                os.environ.pop(name, None)
                if previous is None
                else os.environ.__setitem__(name, previous)
            )
        )

    namespace.update(docs_configure=docs_configure, docs_setenv=docs_setenv)
    package = types.ModuleType("shop")
    package.__path__ = []
    sys.modules["shop"], sys.modules[EXAMPLE_MODULE] = package, _DocumentModule(namespace)
    namespace["__name__"] = EXAMPLE_MODULE
    namespace["_exit_stack"] = stack


def _teardown(namespace: dict[str, Any]) -> None:
    sys.modules.pop(EXAMPLE_MODULE, None)
    sys.modules.pop("shop", None)
    namespace["_exit_stack"].close()


_examples = {
    "setup": _setup,
    "teardown": _teardown,
    # Each example gets a database (emptied after it, as for any test).
    "fixtures": ["transactional_db"],
}
_readme = Sybil(
    parsers=[MarkdownPython(), MarkdownSkip()], patterns=["README.md"], name="readme", **_examples
)
_docs = Sybil(
    parsers=[MystPython(), MystSkip()],
    patterns=["docs/*.md", "docs/*/*.md"],
    excludes=["docs/_build/*"],
    name="docs",
    **_examples,
)
pytest_collect_file = (_readme + _docs).pytest()
