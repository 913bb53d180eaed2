"""location: archive locations.

    storagemanager location add NAME --type hdd|tape|automated|symlink --mount PATH
                                --max-size 4TB [--watermark 80] [--purge-enabled]
                                [--xml-folder PATH] [--current]
    storagemanager location add NAME --type s3 --mount STAGING --max-size 50TB
                                --bucket B [--endpoint-url URL] [--region R] [--prefix P]
                                [--storage-class C] [--addressing-style path]
                                [--credentials profile:NAME|config:NAME]
                                [--part-size 16MiB] [--concurrency 4] [--no-read-back]
    storagemanager location edit-s3 ID [the s3 options above]
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
    s3_arguments(add)
    s3_arguments(sub.add_parser("edit-s3"), editing=True)
    listing = sub.add_parser("list")
    listing.add_argument("--json", action="store_true")
    for action in ("rescan", "purge-cache", "remove"):
        sub.add_parser(action).add_argument("id", type=int)


S3_OPTIONS = ("bucket", "endpoint_url", "region", "prefix", "storage_class",
              "addressing_style", "credentials", "part_size", "multipart_threshold",
              "concurrency")


def s3_arguments(parser, editing=False):
    """The S3 settings (backends/s3.py S3Settings); never a key or secret: credentials
    name a profile or an omero config secret, else the AWS chain is used."""
    if editing:
        parser.add_argument("id", type=int)
    parser.add_argument("--bucket")
    parser.add_argument("--endpoint-url")
    parser.add_argument("--region")
    parser.add_argument("--prefix")
    parser.add_argument("--storage-class")
    parser.add_argument("--addressing-style", choices=["auto", "path", "virtual"])
    parser.add_argument("--credentials", help="'' (AWS chain), profile:NAME or config:NAME")
    parser.add_argument("--part-size", type=parse_size)
    parser.add_argument("--multipart-threshold", type=parse_size)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--no-read-back", dest="read_back", action="store_false",
                        default=None)


def s3_options(options):
    found = {k: options[k] for k in S3_OPTIONS if options.get(k) is not None}
    if options.get("read_back") is not None:
        found["read_back"] = options["read_back"]
    return found


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
                                    options["current"], s3_options(options))
            if location.type == Location.S3:
                from ..backends.s3 import describe_settings

                command.stdout.write(f"added {location} at "
                                     f"{describe_settings(location.options)}/{location.pk}/ "
                                     f"(staging {location.mount}/{location.pk}/)")
            else:
                command.stdout.write(f"added {location} at {location.mount}/{location.pk}/")
        elif action == "edit-s3":
            from ..engine.locations import edit_s3_settings

            location = edit_s3_settings(_get(options["id"]), s3_options(options))
            command.stdout.write(f"saved the S3 settings of {location}")
        elif action == "list":
            rows = []
            for loc in Location.objects.order_by("pk"):
                where = loc.mount
                if loc.type == Location.S3:  # no secret: the settings never hold one
                    from ..backends.s3 import describe_settings

                    where = describe_settings(loc.options)
                rows.append({"id": loc.pk, "name": loc.name, "type": loc.type,
                             "mount": where, "max_bytes": loc.max_bytes,
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
            report = rescan(_get(options["id"]))
            command.stdout.write(f"rescan: {len(report.added)} bag(s) added to the catalogue, "
                                 f"{len(report.missing)} missing, {len(report.back)} found "
                                 "again" + (f"; purged with no copy left: "
                                            f"{', '.join(report.orphaned)}"
                                            if report.orphaned else ""))
        elif action == "purge-cache":
            result = purge_read_cache(_get(options["id"]))
            command.stdout.write(f"evicted {len(result.evicted)} bag(s), "
                                 f"{result.freed_bytes} bytes, from the read cache"
                                 + (f"; kept {len(result.kept)} still in write/ (not on "
                                    "the archive medium yet)" if result.kept else ""))
        elif action == "remove":
            location = _get(options["id"])
            remove_location(location)
            command.stdout.write(f"removed {location.name!r} (id {options['id']})")
    except LocationError as exc:
        raise CommandError(str(exc))
    return 0
