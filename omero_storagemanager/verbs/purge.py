"""purge: free primary storage of collections that have verified copies.

    storagemanager purge Project:12 [--dry-run]

Deletes (or, for copies at a symlink location, replaces by links) only files with
enough copies of exactly their content there now (read and compared before each
delete), never a file changed since it was copied, never a file another online
holder needs, never an in-place import's target. --dry-run lists what would be
freed, what blocks the rest and how much the checks will read, and changes nothing.
"""
import humanize
from django.core.management.base import CommandError

from .. import preferences, settings
from ..engine.locks import CollectionBusy
from ..engine.purge import PurgeError, plan_purge, purge_collection
from .common import admin_gateway, collections_for, open_catalog, repository_paths

HELP = "purge collections (needs verified copies); --dry-run to see what would happen"


def add_arguments(parser):
    parser.add_argument("collections", nargs="+", metavar="COLLECTION")
    parser.add_argument("--dry-run", action="store_true", help="change nothing, report only")


def run(command, options):
    conn, gateway = open_catalog(), None
    try:
        collections = collections_for(conn, options["collections"])
        along = {c.key for c in collections}  # purged together: may share files
        gateway = None if options["dry_run"] else admin_gateway()
        checks = {"audit_max_age_days": settings.PURGE_AUDIT_MAX_AGE_DAYS,
                  "sample_above": settings.PURGE_SAMPLE_ABOVE}
        for collection in collections:
            try:
                plan = _run_one(command, options, conn, collection, gateway, along, checks)
            except (CollectionBusy, PurgeError) as exc:
                raise CommandError(str(exc))
            for path, reason in plan.blocked:
                command.stdout.write(f"  blocked: {path}: {reason}")
    finally:
        conn.close()
        if getattr(gateway, "close", None) is not None:
            gateway.close()  # the service account's session to OMERO.server
    return 0


def _run_one(command, options, conn, collection, gateway, along, checks):
    if options["dry_run"]:
        plan = plan_purge(conn, repository_paths(), collection,
                          preferences.get("copies_required"), along,
                          settings.INCLUDE_ATTACHMENTS, **checks)
        command.stdout.write(
            f"{collection.key}: would free {len(plan.freed)} file(s), "
            f"{humanize.naturalsize(plan.freed_bytes, binary=True)} "
            f"({plan.freed_bytes} bytes); {len(plan.blocked)} blocked; "
            f"{plan.already} already purged; the checks will read "
            f"{humanize.naturalsize(plan.read_bytes, binary=True)} "
            f"({plan.read_bytes} bytes)"
            + (f", {plan.audited} copies trusted on a recent audit"
               if plan.audited else ""))
        return plan
    return purge_collection(
        conn, repository_paths(), collection, gateway,
        preferences.get("copies_required"), along,
        preferences.get("purge_rename"), preferences.get("archive_user_id"),
        preferences.get("archive_group_id"), settings.INCLUDE_ATTACHMENTS,
        log=command.stdout.write, **checks)
