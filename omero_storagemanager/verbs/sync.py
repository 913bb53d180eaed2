"""sync: learn every Project and Screen of OMERO (new, renamed, moved, deleted)."""
import json

from ..engine.sync import sync_collections
from .common import open_catalog

HELP = "bring the app's list of Projects and Screens in line with OMERO"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(command, options):
    conn = open_catalog()
    try:
        report = sync_collections(conn)
    finally:
        conn.close()
    if options["json"]:
        command.stdout.write(json.dumps(report.__dict__, indent=2))
    else:
        command.stdout.write(
            f"{report.total} collections in OMERO: {len(report.added)} new, "
            f"{len(report.changed)} changed, {len(report.gone)} gone, {len(report.back)} back")
    return 0
