"""Celery application and thin tasks that call core."""
