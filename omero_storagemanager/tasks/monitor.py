"""The monitor: a django-q2 schedule every minute (installed by migration 0004).

It resumes jobs whose worker died (no heartbeat for settings.HEARTBEAT_TIMEOUT seconds:
another worker claims them and the handler picks up where it stopped), looks again at
waiting jobs whose time has come, dispatches queued jobs that may run (so no job
depends on a task that a broker lost: Redis loses a killed worker's task), and sends
the reminders about jobs waiting for a person (tasks/waiting.py).
"""
from datetime import datetime, timezone

from django.db import transaction

from ..models import Job
from .queue import claim_lock, dispatch_ready
from .runner import stale
from .waiting import remind


def monitor(now=None):
    now = now or datetime.now(timezone.utc)
    resumed = []
    with transaction.atomic():
        claim_lock()
        for job in Job.objects.select_for_update().filter(state=Job.RUNNING):
            if stale(job, now):
                job.state = Job.QUEUED
                job.wait_reason = f"worker {job.worker} stopped answering: resuming"
                job.worker = ""
                job.save(update_fields=["state", "wait_reason", "worker"])
                resumed.append(job.pk)
    dispatched = dispatch_ready(now)
    reminded = remind(now)
    return {"resumed": resumed, "dispatched": [j.pk for j in dispatched], "reminded": reminded}
