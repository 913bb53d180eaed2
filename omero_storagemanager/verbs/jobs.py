"""jobs: the job queue and history.

    storagemanager jobs list [--all] [--json]
    storagemanager jobs show ID [--log]
    storagemanager jobs cancel ID
    storagemanager jobs retry ID
    storagemanager jobs submit KIND [COLLECTION...] [--location ID] [--mode MODE]
"""
import json
import os

from django.core.management.base import CommandError

from ..models import Job, Location
from ..tasks.queue import JobRefused, cancel, retry, submit
from .common import collections_for, open_catalog

HELP = "list, show, cancel, retry and submit jobs"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list")
    listing.add_argument("--all", action="store_true", help="also finished jobs")
    listing.add_argument("--json", action="store_true")
    show = sub.add_parser("show")
    show.add_argument("id", type=int)
    show.add_argument("--log", action="store_true", help="print the job log")
    for action in ("cancel", "retry"):
        sub.add_parser(action).add_argument("id", type=int)
    new = sub.add_parser("submit")
    new.add_argument("kind", choices=[k for k, _ in Job.KINDS])
    new.add_argument("collections", nargs="*", metavar="COLLECTION")
    new.add_argument("--location", type=int)
    new.add_argument("--mode", choices=("catalog", "stat", "verify"))
    new.add_argument("--fraction", type=float)


def describe(job):
    return {"id": job.pk, "kind": job.kind, "state": job.state,
            "collections": [c.key for c in job.collections.all()],
            "location": job.location.name if job.location else None,
            "requested_by": job.requested_by_name, "wait_reason": job.wait_reason,
            "error": job.error, "files_done": job.files_done, "files_total": job.files_total,
            "bytes_done": job.bytes_done, "bytes_total": job.bytes_total,
            "attempts": job.attempts, "created": job.created.isoformat(),
            "started": job.started and job.started.isoformat(),
            "finished": job.finished and job.finished.isoformat(),
            "log_dir": job.log_dir, "summary": job.summary}


def _get(pk):
    try:
        return Job.objects.get(pk=pk)
    except Job.DoesNotExist:
        raise CommandError(f"no job {pk}")


def run(command, options):
    action = options["action"]
    try:
        if action == "list":
            jobs = Job.objects.order_by("-pk")
            if not options["all"]:
                jobs = jobs.filter(state__in=Job.ACTIVE)
            rows = [describe(j) for j in jobs[:500]]
            if options["json"]:
                command.stdout.write(json.dumps(rows, indent=1))
            for r in [] if options["json"] else rows:
                progress = f"{r['files_done']}/{r['files_total'] or '?'} files"
                command.stdout.write(
                    f"{r['id']:>6} {r['kind']:<15} {r['state']:<9} {progress:<18} "
                    f"{' '.join(r['collections']) or r['location'] or ''}"
                    + (f"  ({r['wait_reason']})" if r["wait_reason"] else ""))
        elif action == "show":
            job = _get(options["id"])
            command.stdout.write(json.dumps(describe(job), indent=1))
            log = os.path.join(job.log_dir, "job.log") if job.log_dir else ""
            if options["log"] and log and os.path.exists(log):
                with open(log, encoding="utf-8") as f:
                    command.stdout.write(f.read())
        elif action == "cancel":
            job = cancel(_get(options["id"]))
            command.stdout.write(f"job {job.pk}: " + (
                "cancelled" if job.state == Job.CANCELLED else "cancel requested"))
        elif action == "retry":
            job = retry(_get(options["id"]))
            command.stdout.write(f"job {job.pk} queued again")
        elif action == "submit":
            collections = []
            if options["collections"]:
                conn = open_catalog()
                try:
                    collections = collections_for(conn, options["collections"])
                finally:
                    conn.close()
            location = None
            if options["location"] is not None:
                location = Location.objects.filter(pk=options["location"]).first()
                if location is None:
                    raise CommandError(f"no archive location with id {options['location']}")
            params = {k: options[k] for k in ("mode", "fraction") if options.get(k) is not None}
            job = submit(options["kind"], collections, location, params,
                         requested_by=(None, "command line"))
            command.stdout.write(f"job {job.pk} queued")
    except JobRefused as exc:
        raise CommandError(str(exc))
    return 0
