"""Celery app and tasks: thin wrappers that run core's answering steps on a worker."""
