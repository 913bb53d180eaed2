"""stats: usage per user and per group, against quotas.

    storagemanager stats [--json]

Online bytes count each file once per user (or group), however many of their
collections hold it; they come from the OMERO database (catalog figures).
"""
import json

import humanize

from .. import settings
from ..engine.stats import usage_statistics
from .common import open_catalog

HELP = "usage per user and per group, with quotas"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(command, options):
    conn = open_catalog()
    try:
        stats = usage_statistics(conn, include_attachments=settings.INCLUDE_ATTACHMENTS)
    finally:
        conn.close()
    if options["json"]:
        command.stdout.write(json.dumps(stats, indent=1, ensure_ascii=False))
        return 0
    for scope in ("users", "groups"):
        command.stdout.write(scope.capitalize() + ":")
        for entry in stats[scope]:
            quota = entry["quota_bytes"]
            command.stdout.write(
                f"  {entry['name']:<20} {entry['collections']:>5} collections "
                f"{humanize.naturalsize(entry['online_bytes'], binary=True):>10} online"
                + (f" of {humanize.naturalsize(quota, binary=True)}" if quota else "")
                + ("  OVER QUOTA" if entry["over_quota"] else ""))
    return 0
