"""rebuild: the app database back from the bags on the archive locations (issue 20).

    storagemanager rebuild [--location MOUNT]... [--type hdd|tape|automated|symlink]
                           [--bucket B --s3-staging FOLDER [S3 settings]] [--merge]

For an app database lost without a backup: migrate an empty database, then rebuild.
Locations come back from the markers at each --location mount point (with their ids),
and from the marker objects under an S3 bucket's prefix (--bucket and the S3 settings
of `location add --type s3`), besides those already in the database; copies from their
bags, each hashed against its manifest now; purge records from the records the bags carry, else inferred from
OMERO and the repository. Nothing is deleted. A database holding copies or purge
records is refused unless --merge (then only what is missing is added). Exit 1 when
something could not be decided (the report lists it).
"""
from datetime import datetime

from django.core.management.base import CommandError

from .. import settings
from ..engine.rebuild import RebuildRefused, rebuild
from ..models import Location
from .common import open_catalog, repository_paths
from .location import s3_arguments, s3_options

HELP = "rebuild the app database from the bags on the locations"


def add_arguments(parser):
    parser.add_argument("--location", action="append", default=[], metavar="MOUNT",
                        help="a mount point holding <id>/ folders of locations (repeatable)")
    parser.add_argument("--type", default=Location.HDD,
                        choices=[t for t, _ in Location.TYPES if t != Location.S3],
                        help="type of a location found without its settings file (hdd)")
    parser.add_argument("--merge", action="store_true",
                        help="add only what is missing to a database that is not empty")
    # An S3 bucket's locations: its settings as `location add --type s3` takes them, and
    # the local staging folder the locations restore through.
    parser.add_argument("--s3-staging", metavar="FOLDER",
                        help="with --bucket: the S3 locations' local staging folder")
    s3_arguments(parser)


def run(command, options):
    buckets = []
    if options.get("bucket"):
        if not options.get("s3_staging"):
            raise CommandError("--bucket needs --s3-staging FOLDER (where its locations "
                               "stage restores)")
        buckets.append((s3_options(options), options["s3_staging"]))
    conn = open_catalog()
    try:
        report = rebuild(conn, repository_paths(), options["location"], options["type"],
                         options["merge"], settings.INCLUDE_ATTACHMENTS,
                         log=lambda line: None, buckets=buckets)
    except RebuildRefused as exc:
        raise CommandError(str(exc))
    finally:
        conn.close()
    for line in summary(report):
        command.stdout.write(line)
    return 0 if report.decided else 1


def summary(report, now=None):
    """The one-screen report, as lines."""
    now = now or datetime.now()
    lines = [f"rebuild of the app database ({now:%Y-%m-%d %H:%M})"]
    lines += [f"  location {text}" for text in report.locations]
    lines.append(f"  bags found: {report.bags}; copies registered: {report.copies_added} "
                 f"(verified: {report.copies_added - len(report.copies_failed)}, failed "
                 f"their check: {len(report.copies_failed)}); already known: "
                 f"{report.copies_known}")
    lines += [f"    failed its check (marked failed audit): {w}" for w in report.copies_failed]
    states = ", ".join(f"{state} {count}" for state, count in sorted(report.collections.items()))
    lines.append(f"  collections: {states or 'none'}")
    lines.append(f"  purge records: {report.purged_from_bags} from the bags' records, "
                 f"{report.purged_inferred} inferred from OMERO and the repository, "
                 f"{report.purged_known} already known")
    if report.inferred_collections:
        lines.append("    inferred (bags without purge records) for: "
                     + ", ".join(report.inferred_collections))
    if report.restored_since or report.deleted_in_omero:
        lines.append(f"  left out: {report.restored_since} recorded purged but back in the "
                     f"repository, {report.deleted_in_omero} deleted in OMERO since")
    if report.undecided:
        lines.append(f"  NOT DECIDED ({len(report.undecided)}):")
        lines += [f"    {text}" for text in report.undecided[:20]]
        if len(report.undecided) > 20:
            lines.append(f"    ... and {len(report.undecided) - 20} more")
    else:
        lines.append("  everything found was decided")
    return lines
