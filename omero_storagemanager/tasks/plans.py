"""The planner's second step: an archive job queued by the planner (params then_purge)
queues, once it is done, the purge of those of its collections whose verified copies
now suffice. Called by the archive handler at its end; idempotent (a purge job already
active for the collection is not queued again)."""
from django.db.models import Count

from .. import preferences
from ..models import Copy, Job
from .queue import JobRefused, submit


def purge_after_archive(job):
    if not job.params.get("then_purge"):
        return None
    collections = list(job.collections.all())
    required = preferences.get("copies_required")
    copies = dict(Copy.objects.filter(collection__in=collections, state=Copy.VERIFIED)
                  .values("collection").annotate(n=Count("location", distinct=True))
                  .values_list("collection", "n"))
    already = set(Job.objects.filter(kind="purge", state__in=Job.ACTIVE,
                                     collections__in=collections)
                  .values_list("collections", flat=True))
    ready = [c for c in collections
             if copies.get(c.pk, 0) >= required and c.pk not in already]
    if not ready:
        return None
    try:
        return submit("purge", ready, params={"plan": job.params.get("plan"),
                                              "after_job": job.pk},
                      requested_by=(job.requested_by_id, job.requested_by_name))
    except JobRefused:
        return None
