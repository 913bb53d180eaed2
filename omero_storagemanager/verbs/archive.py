"""archive: verified copies of collections at the current (or a named) location.

    storagemanager archive Project:12 Screen:3 [--location ID]

Incremental: only files without a verified copy at that location are copied. Safe to
run again after an interruption: it resumes.
"""
import sys

from django.core.management.base import CommandError

from .. import settings
from ..backends.base import LocationError
from ..engine.archive import ArchiveError, archive_collection
from ..engine.locks import CollectionBusy
from ..engine.locations import current_location
from ..engine.progress import ConsoleProgress
from ..models import Location
from .common import collections_for, keyed, open_catalog, repository_paths

HELP = "archive collections (verified BagIt copies)"


def add_arguments(parser):
    parser.add_argument("collections", nargs="+", metavar="COLLECTION")
    parser.add_argument("--location", type=int, help="location id (default: the current one)")
    parser.add_argument("--quiet", action="store_true")


def location_from(options):
    try:
        if options.get("location") is not None:
            return Location.objects.get(pk=options["location"])
        return current_location()
    except Location.DoesNotExist:
        raise CommandError(f"no archive location with id {options['location']}")
    except LocationError as exc:
        raise CommandError(str(exc))


def run(command, options):
    location = location_from(options)
    conn = open_catalog()
    failures = 0
    try:
        for collection in collections_for(conn, options["collections"]):
            progress = None if options["quiet"] else ConsoleProgress(sys.stderr, label="files")
            try:
                archive_collection(conn, repository_paths(), collection, location,
                                   settings.INCLUDE_ATTACHMENTS, settings.COPY_WORKERS,
                                   progress, log=command.stdout.write)
            except (ArchiveError, LocationError, CollectionBusy) as exc:
                failures += 1
                command.stderr.write(keyed(collection, exc))
    finally:
        conn.close()
    return 1 if failures else 0
