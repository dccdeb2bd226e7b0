"""A log formatter for Google Cloud Logging: one JSON object per line, grouped by trace.

Opt in through Django's ``LOGGING``::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"cloud": {"()": "cloudtask.logging.CloudLoggingFormatter"}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "cloud"}},
        "loggers": {"cloudtask": {"handlers": ["stdout"], "level": "INFO"}},
    }

Cloud Run and App Engine read each line written to stdout as a structured entry: ``severity``
and ``message`` become the entry's own, ``logging.googleapis.com/trace`` and ``spanId`` put
it under its request's trace. A line written while a task runs carries the task's fields
(``cloudtask``: task, call id, queue, Cloud Tasks task id, attempt) and the delivery's trace.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from typing import Any

from . import conf, tracing
from .backends.cloudtasks import environment

#: Python's level names as Cloud Logging's severities.
SEVERITIES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"


class CloudLoggingFormatter(logging.Formatter):
    """Format each record as one line of JSON that Cloud Logging reads as a structured entry.

    ``project`` names the project of the trace (``projects/<project>/traces/<id>``); by
    default ``CLOUDTASK["PROJECT"]``, else the ``GOOGLE_CLOUD_PROJECT`` environment variable.
    Without a project the trace id is written alone, which Cloud Logging does not link.
    """

    def __init__(self, *args: Any, project: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        entry: dict[str, Any] = {
            "severity": SEVERITIES.get(record.levelno, record.levelname),
            "message": message,
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
            "logging.googleapis.com/sourceLocation": {
                "file": record.pathname,
                "line": record.lineno,
                "function": record.funcName,
            },
        }
        delivery = tracing.current.get()
        if delivery is not None:
            request = delivery.request
            entry["cloudtask"] = {
                "task": delivery.task_name,
                "call_id": delivery.call_id,
                "queue": request.queue_name,
                "task_id": request.task_name,
                "attempt": request.retry_count + 1,
            }
        ids = tracing.trace_ids(delivery)
        if ids is not None:
            trace_id, span_id, sampled = ids
            project = self.project or _project()
            entry[TRACE_KEY] = f"projects/{project}/traces/{trace_id}" if project else trace_id
            entry[SPAN_KEY] = span_id
            entry[SAMPLED_KEY] = sampled
        return json.dumps(entry, ensure_ascii=False, default=str)


def _project() -> str | None:
    try:
        project = conf.get("PROJECT")
        if project == environment.AUTO:
            # Read once per process, and by then usually already read by the first push.
            project = environment.detected_project()
    except Exception:  # a bad CLOUDTASK setting, or no project found, must not stop logging
        project = None
    return str(project) if project else os.environ.get("GOOGLE_CLOUD_PROJECT")
