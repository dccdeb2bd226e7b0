"""Django's own ``tests/tasks/`` suite, run against cloudtask's django.tasks backend.

``prepare()`` takes the suite from the source distribution of the installed Django release
(on Django 5.2, the 6.0 release's suite, for the ``django_tasks`` backport), downloaded from
PyPI once into ``.cache/django-suite/``. ``test_tasks.py`` and ``test_custom_backend.py``
run unchanged; ``test_immediate_backend.py`` is adapted only to name this backend and to the
capabilities it has (see ``ADAPTATIONS``); on the backport, module names are those of
``django_tasks``. Run it with ``.venv/bin/pytest tests/test_django_suite.py``.
"""
