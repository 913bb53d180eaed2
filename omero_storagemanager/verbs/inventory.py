"""inventory: every file of one Project or Screen.

    storagemanager inventory Project:12 [--json] [--catalog-only]

By default each file is also stat'ed (existence, size, times, symlink target, pyramids
found on disk). --json prints one JSON object, documented in the README.
"""
import json
from dataclasses import asdict

import humanize
from django.core.management.base import CommandError

from .. import settings
from ..catalog.collections import UnknownCollection, get_collection
from ..catalog.inventory import InventoryReader
from ..engine.disk import RepositoryUnreadable, check_repository, stat_inventory
from ..engine.figures import figures_from_inventory
from ..engine.scan import _jsonable
from .common import open_catalog, parse_keys, repository_paths

HELP = "list the files of one collection"


def add_arguments(parser):
    parser.add_argument("collection", metavar="COLLECTION", help="Project:<id> or Screen:<id>")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--catalog-only", action="store_true",
                        help="OMERO database only: do not stat the files")


def run(command, options):
    [(kind, oid)] = parse_keys([options["collection"]])
    paths = repository_paths()
    conn = open_catalog()
    try:
        row = get_collection(conn, kind, oid)
        inventory = InventoryReader(conn, paths, settings.INCLUDE_ATTACHMENTS).read(kind, oid)
        mode = "catalog"
        if not options["catalog_only"]:
            check_repository(paths)
            stat_inventory(inventory, paths)
            mode = "stat"
    except (UnknownCollection, RepositoryUnreadable) as exc:
        raise CommandError(str(exc))
    finally:
        conn.close()
    figures = figures_from_inventory(inventory, mode)
    if options["json"]:
        command.stdout.write(json.dumps({
            "collection": row.key, "name": row.name,
            "owner": {"id": row.owner_id, "name": row.owner_name},
            "group": {"id": row.group_id, "name": row.group_name},
            "mode": mode, "image_ids": inventory.image_ids,
            "figures": _jsonable(figures),
            "files": [asdict(f) for f in inventory.files],
            "thumbnails": [asdict(t) for t in inventory.thumbnails],
        }, indent=1, ensure_ascii=False))
        return 0
    command.stdout.write(f"{row.key} {row.name!r} owner {row.owner_name} group {row.group_name}")
    for f in inventory.files:
        size = f.disk_size if f.disk_size is not None else f.size
        flags = [flag for flag, on in (
            ("missing", f.exists is False), ("shared with " + ",".join(f.shared_with), f.shared_with),
            ("symlink -> " + str(f.symlink_target), f.symlink_target),
            ("no checksum", not f.hash)) if on]
        command.stdout.write(f"{f.kind:<14} {size if size is not None else '?':>12} {f.path}"
                             + (f"  [{'; '.join(flags)}]" if flags else ""))
    command.stdout.write(
        f"{figures.files} files, {humanize.naturalsize(figures.bytes, binary=True)}; "
        f"{figures.thumbnails} thumbnails (not archived)")
    return 0
