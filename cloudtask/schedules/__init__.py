"""Periodic tasks: declared in code, Cloud Scheduler jobs in production, the local worker in development.

```python
from cloudtask import periodic, task

@periodic("0 3 * * *", time_zone="Europe/Zurich")
@task
def nightly_report(request): ...
```

Where schedules run is what the configured backend declares (``uses_cloud_scheduler``): the
Cloud Tasks backend syncs them to Cloud Scheduler jobs; every other backend keeps them in
the database, where the local worker fires them. :mod:`cloudtask.schedules.manage` lists,
syncs, pauses, resumes and runs them on either.
"""

from __future__ import annotations

from .declare import Schedule, check_schedules, declared, get, periodic, schedules
from .records import ScheduleChange, ScheduleInfo

__all__ = [
    "Schedule",
    "ScheduleChange",
    "ScheduleInfo",
    "check_schedules",
    "declared",
    "get",
    "periodic",
    "schedules",
]
