"""The Cloud Tasks backend: ``backend`` pushes, ``manager`` manages queues and tasks.

``client`` holds the process's one Cloud Tasks client, ``requests`` builds the exact API
requests, ``rpc`` retries transient errors under a deadline, and ``errors`` translates API
errors into cloudtask's exception tree.
"""

from .backend import CloudTasksBackend

__all__ = ["CloudTasksBackend"]
