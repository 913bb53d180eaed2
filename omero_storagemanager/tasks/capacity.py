"""The django-q2 schedule (installed by migration 0011) that records the day's usage
(engine/usage.py); hourly, idempotent: the last run of a day stands."""
from ..engine.usage import record_usage


def record_today():
    return {"rows": record_usage()}
