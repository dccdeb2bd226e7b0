"""The local development queue, on the project's database.

``backend`` stores each push through ``store``; ``claims`` leases due tasks and records
attempts; ``limits`` holds each queue's rate and concurrency limits; ``sql`` writes out once
the statements a worker runs at every turn; ``delivery`` makes one attempt over HTTP as Cloud
Tasks would; ``worker`` runs the loop behind ``manage.py cloudtask_worker``; ``manager``
answers queue and task management.
"""

from .backend import LocalBackend

__all__ = ["LocalBackend"]
