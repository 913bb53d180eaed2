"""The django-q2 schedule (installed by migration 0011) that records the day's usage
(engine/capacity.py); hourly, idempotent: the last run of a day stands."""
from ..engine.capacity import record_usage


def record_today():
    return {"rows": record_usage()}
