"""scan: measure Projects and Screens and store the figures.

    storagemanager scan --all                      # every collection, catalog mode
    storagemanager scan Project:12 Screen:3 --mode verify

Modes: catalog (OMERO database only), stat (also stat every file), verify (also hash
every file against OMERO's checksum). A scan never changes OMERO or any file.
"""
import sys

import humanize
import psycopg2
from django.core.management.base import CommandError

from .. import settings
from ..catalog.collections import UnknownCollection
from ..catalog.db import describe
from ..engine.disk import RepositoryUnreadable
from ..engine.progress import ConsoleProgress
from ..engine.scan import MODES, scan
from .common import open_catalog, parse_keys, repository_paths

HELP = "scan one, several or all collections"


def add_arguments(parser):
    parser.add_argument("collections", nargs="*", metavar="COLLECTION",
                        help="Project:<id> or Screen:<id>")
    parser.add_argument("--all", action="store_true", help="scan every collection")
    parser.add_argument("--mode", choices=MODES, default="catalog")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(command, options):
    if bool(options["collections"]) == bool(options["all"]):
        raise CommandError("name collections (Project:12 Screen:3) or give --all, not both")
    keys = None if options["all"] else parse_keys(options["collections"])
    conn = open_catalog()
    progress = None if options["quiet"] else ConsoleProgress(sys.stderr)
    try:
        report = scan(conn, repository_paths(), options["mode"], keys,
                      include_attachments=settings.INCLUDE_ATTACHMENTS, progress=progress,
                      connect=open_catalog)
    except (UnknownCollection, RepositoryUnreadable) as exc:
        raise CommandError(str(exc))
    except psycopg2.Error as exc:
        # Lost: this connection closed, or the scan's second one (an OperationalError:
        # terminated, server gone). Any other database error is a bug: let it show.
        if not (conn.closed or isinstance(exc, psycopg2.OperationalError)):
            raise
        # The OMERO database went away mid-scan (restarted, session terminated): say so
        # in one line; scan() stores its results only at the end, so nothing was stored.
        reason = (str(exc).strip().splitlines() or ["no answer"])[0]
        where = describe(psycopg2.extensions.parse_dsn(conn.dsn))
        raise CommandError(f"OMERO database {where} "
                           f"connection lost during the scan: {reason}; nothing was "
                           "stored, run the scan again")
    finally:
        conn.close()
    seconds = (report.finished - report.started).total_seconds()
    command.stdout.write(
        f"{report.mode} scan of {report.collections} collections: {report.files} files, "
        f"{humanize.naturalsize(report.bytes, binary=True)} ({report.bytes} bytes) "
        f"in {seconds:.1f} s")
    for key, found in sorted(report.problems.items()):
        for problem in found:
            command.stdout.write(f"  {key}: {problem['problem']}: {problem['path']}")
    return 1 if report.problems else 0
