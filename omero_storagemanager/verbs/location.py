"""location: archive locations.

    storagemanager location add NAME --type hdd|tape|automated|symlink --mount PATH
                                --max-size 4TB [--watermark 80] [--purge-enabled]
                                [--xml-folder PATH] [--current]
    storagemanager location list [--json]
    storagemanager location rescan ID
    storagemanager location purge-cache ID
    storagemanager location remove ID
"""
import argparse
import json
import re

import humanize
from django.core.management.base import CommandError

from ..backends.base import LocationError
from ..engine.locations import add_location, purge_read_cache, remove_location, rescan
from ..models import Copy, Location

HELP = "add, list, rescan, purge-cache, remove archive locations"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text):
    """'4TB' -> bytes. An argparse type: a bad size is a usage error, not a crash."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500GB, 4TB, 2TiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add")
    add.add_argument("name")
    add.add_argument("--type", required=True, choices=[t for t, _ in Location.TYPES])
    add.add_argument("--mount", required=True)
    add.add_argument("--max-size", required=True, type=parse_size)
    add.add_argument("--watermark", type=int, default=80)
    add.add_argument("--purge-enabled", action="store_true")
    add.add_argument("--xml-folder", default="")
    add.add_argument("--current", action="store_true")
    listing = sub.add_parser("list")
    listing.add_argument("--json", action="store_true")
    for action in ("rescan", "purge-cache", "remove"):
        sub.add_parser(action).add_argument("id", type=int)


def _get(pk):
    try:
        return Location.objects.get(pk=pk)
    except Location.DoesNotExist:
        raise CommandError(f"no archive location with id {pk}")


def run(command, options):
    action = options["action"]
    try:
        if action == "add":
            location = add_location(options["name"], options["type"], options["mount"],
                                    options["max_size"], options["watermark"],
                                    options["purge_enabled"], options["xml_folder"],
                                    options["current"])
            command.stdout.write(f"added {location} at {location.mount}/{location.pk}/")
        elif action == "list":
            rows = []
            for loc in Location.objects.order_by("pk"):
                rows.append({"id": loc.pk, "name": loc.name, "type": loc.type,
                             "mount": loc.mount, "max_bytes": loc.max_bytes,
                             "current": loc.current, "online": loc.backend().is_online(),
                             "copies": Copy.objects.filter(location=loc).count()})
            if options["json"]:
                command.stdout.write(json.dumps(rows, indent=1))
            for r in rows if not options["json"] else []:
                command.stdout.write(
                    f"{r['id']:>3} {r['name']:<24} {r['type']:<9} "
                    f"{'online ' if r['online'] else 'OFFLINE'} {r['copies']:>5} copies "
                    f"max {humanize.naturalsize(r['max_bytes'], binary=True)} {r['mount']}"
                    + ("  (current)" if r["current"] else ""))
        elif action == "rescan":
            added = rescan(_get(options["id"]))
            command.stdout.write(f"rescan: {len(added)} bag(s) added to the catalogue")
        elif action == "purge-cache":
            result = purge_read_cache(_get(options["id"]))
            command.stdout.write(f"evicted {len(result.evicted)} bag(s), "
                                 f"{result.freed_bytes} bytes, from the read cache")
        elif action == "remove":
            location = _get(options["id"])
            remove_location(location)
            command.stdout.write(f"removed {location.name!r} (id {options['id']})")
    except LocationError as exc:
        raise CommandError(str(exc))
    return 0
