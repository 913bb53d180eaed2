"""refresh: bring the catalogue figures up to date from OMERO's eventlog.

    storagemanager refresh            # what changed since the last refresh only
    storagemanager refresh --full     # a full catalog scan, and the eventlog cursor reset

Where eventlog cannot tell what changed (rows deleted by a graph request, rows pruned
before they were read, no catalogue yet), the refresh is a full catalog scan and says
why. The schedule runs the same thing every few minutes as a job.
"""
import sys

import humanize

from .. import settings
from ..engine.incremental import refresh_catalog
from ..engine.progress import ConsoleProgress
from .common import open_catalog

HELP = "refresh the catalogue from OMERO's eventlog (incremental)"


def add_arguments(parser):
    parser.add_argument("--full", action="store_true",
                        help="a full catalog scan, whatever eventlog says")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(command, options):
    conn = open_catalog()
    progress = None if options["quiet"] else ConsoleProgress(sys.stderr)
    try:
        report = refresh_catalog(conn, settings.INCLUDE_ATTACHMENTS, progress,
                                 connect=open_catalog, log=command.stdout.write,
                                 force_full=options["full"])
    finally:
        conn.close()
    command.stdout.write(
        f"{report.mode} refresh: {report.events} eventlog row(s), {report.collections} "
        f"collection(s), {report.files} files, "
        f"{humanize.naturalsize(report.bytes, binary=True)} in {report.seconds:.1f} s")
    return 0
