"""The rolling stat scan (issue 20): last access that stays fresh.

A scheduled scan reads the catalogue of every collection (fast: SQL only), then
stat-scans a slice of them, those whose disk figures (files present, last access) are
the oldest or missing, sized so that every collection is covered within
settings.STAT_SCAN_PERIOD_DAYS at the scan schedule's number of runs a day. A big
repository is so covered a little each night instead of never.
"""
import math

from django.db.models import F, Max, Q

from .. import settings
from ..models import Collection


def runs_per_period():
    from .schedules import get_schedules

    per_day = max(1, len(get_schedules()["scan"]["times"]))
    return settings.STAT_SCAN_PERIOD_DAYS * per_day


def stat_slice():
    """The collections this run stat-scans: the oldest disk figures first."""
    collections = (Collection.objects.filter(gone=False)
                   .annotate(last_stat=Max("scans__finished",
                                           filter=Q(scans__mode__in=("stat", "verify"))))
                   .order_by(F("last_stat").asc(nulls_first=True), "pk"))
    total = collections.count()
    if not total:
        return []
    return list(collections[:math.ceil(total / runs_per_period())])
