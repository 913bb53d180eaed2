"""What a location is, written beside its marker, so a rebuild can add it back (issue 20).

<mount>/<id>/.omero-storagemanager holds the location's marker (backends/base.py): it
says which location a disk is, not what kind. This file, <mount>/<id>/LOCATION_FILE,
says the rest (name, type, maximum size, watermark, XML folder, whether it is the
current target): written when the location is added, and again, on every location
reachable then, when one is edited or made current. `storagemanager rebuild --location
MOUNT` takes each <mount>/<id>/ holding a marker back with its id and marker, and its
settings from this file; without one (a location made before it), with the type the
rebuild is given and the size of its disk, for an admin to adjust.
"""
import json
import os
import shutil
from pathlib import Path
from typing import List, Optional, Tuple

from django.core.management.color import no_style
from django.db import connection, transaction

from ..backends.base import MARKER, LocationError, validate_mount
from ..backends.fsutil import atomic_write_bytes
from ..models import Location

LOCATION_FILE = ".omero-storagemanager-location.json"
FIELDS = ("name", "type", "max_bytes", "purge_watermark", "purge_enabled", "xml_folder",
          "current")


def write_description(location) -> None:
    """The location's settings into <mount>/<id>/ (an S3 location's: an object beside its
    marker object, with its S3 settings, which never hold a secret)."""
    text = json.dumps({name: getattr(location, name) for name in FIELDS}, indent=1)
    if location.type == Location.S3:
        from ..backends import s3upload

        backend = location.backend()
        text = json.dumps(dict(json.loads(text), options=location.options), indent=1)
        s3upload.put_bytes(backend.client, backend.bucket, f"{backend.base_key}/{LOCATION_FILE}",
                           (text + "\n").encode("utf-8"))
        return
    root = location.backend().root
    atomic_write_bytes(root / LOCATION_FILE, (text + "\n").encode("utf-8"))


def refresh_descriptions(locations=None) -> None:
    """After an edit: the file of every location whose disk is there now, rewritten (a
    disk not connected keeps its older file; a rebuild then says what it took)."""
    for location in locations if locations is not None else Location.objects.all():
        try:
            if location.backend().is_online():
                write_description(location)
        except Exception:  # noqa: BLE001 (an unreachable disk or server keeps its older file)
            pass


def read_description(root) -> Optional[dict]:
    """The settings written at <root> (a location's <mount>/<id>/), None when there are
    none or they cannot be read (a rebuild then uses its own defaults)."""
    try:
        found = json.loads((Path(root) / LOCATION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict):
        return None
    return {name: found[name] for name in FIELDS if name in found}


def locations_at(mount, location_type) -> Tuple[List[str], List[str]]:
    """Locations taken back from their markers at `mount` (each <mount>/<id>/ holding
    one): (what was done, what could not be decided), a line each."""
    done, undecided = [], []
    try:
        mount = validate_mount(mount)
    except LocationError as exc:
        return done, [str(exc)]
    current = []
    for entry in sorted(os.scandir(mount), key=lambda e: e.name):
        if not (entry.name.isdigit() and entry.is_dir(follow_symlinks=False)):
            continue
        try:
            with open(os.path.join(entry.path, MARKER), encoding="ascii") as f:
                marker = f.read().strip()
        except (OSError, UnicodeDecodeError):
            continue  # not a location's folder (or one without a marker)
        lid = int(entry.name)
        known = Location.objects.filter(pk=lid).first()
        if known is not None:
            if known.marker == marker and known.mount == mount:
                done.append(f"{known}: already known")
            else:
                undecided.append(f"{entry.path}: its marker names location {lid}, but id "
                                 f"{lid} is {known.name!r} at {known.mount} with another "
                                 "marker: not added")
            continue
        described = read_description(entry.path) or {}
        if described.get("type", location_type) not in dict(Location.TYPES):
            undecided.append(f"{entry.path}: unknown type {described['type']!r} in "
                             f"{LOCATION_FILE}: not added")
            continue
        location = _add_back(lid, mount, marker, described, location_type)
        if described.get("current"):
            current.append(location)
        how = "its settings file" if described else f"type {location.type}, size of its disk"
        done.append(f"{location}: added back from its marker ({how})")
    return done + _current_again(current), undecided


def _current_again(current):
    """The one location taken back that says it was the current target becomes it again
    (unless another is current already); a line saying so."""
    if len(current) == 1 and not Location.objects.filter(current=True).exists():
        Location.objects.filter(pk=current[0].pk).update(current=True)
        return [f"{current[0]}: the current target of new archives, as it said"]
    return []


def s3_locations_at(options, staging) -> Tuple[List[str], List[str]]:
    """locations_at() for a bucket: each <prefix>/<id>/ holding a marker object taken back
    as an S3 location with its id, these S3 settings (`options`, as `location add --type
    s3` takes them) and the local staging folder `staging`; its name and sizes from the
    settings object beside the marker, when there is one."""
    from .. import settings as app_settings
    from ..backends.base import LocationConfig
    from ..backends.s3 import MARKER_NAME, S3Backend, S3Settings

    done, undecided, current = [], [], []
    try:
        settings = S3Settings.from_options(dict(options))
        staging = validate_mount(staging)
    except LocationError as exc:
        return done, [str(exc)]
    # A backend of no location (id 1 is never used as such): only its client is asked.
    finder = S3Backend(LocationConfig(id=1, name="rebuild", type=Location.S3, mount=staging,
                                      max_bytes=0, options=dict(options)))
    finder.secret_lookup = app_settings.S3_CREDENTIALS.get
    client, prefix = finder.client, settings.prefix.strip("/")
    base = f"{prefix}/" if prefix else ""

    def small_object(key):
        from botocore.exceptions import ClientError

        try:
            return client.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
    try:
        ids = sorted(
            int(entry["Prefix"][len(base):].rstrip("/"))
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=settings.bucket, Prefix=base, Delimiter="/")
            for entry in page.get("CommonPrefixes", [])
            if entry["Prefix"][len(base):].rstrip("/").isdigit())
        for lid in ids:
            marker = small_object(f"{base}{lid}/{MARKER_NAME}")
            if marker is None:
                continue  # not a location's prefix
            marker = marker.decode("ascii", "replace").strip()
            where = f"s3://{settings.bucket}/{base}{lid}/"
            known = Location.objects.filter(pk=lid).first()
            if known is not None:
                if known.marker == marker:
                    done.append(f"{known}: already known")
                else:
                    undecided.append(f"{where}: its marker names location {lid}, but id {lid} "
                                     f"is {known.name!r} with another marker: not added")
                continue
            try:
                described = json.loads(small_object(f"{base}{lid}/{LOCATION_FILE}") or b"{}")
            except ValueError:
                described = {}
            described = {k: described[k] for k in FIELDS if k in described} \
                if isinstance(described, dict) else {}
            described["type"] = Location.S3
            location = _add_back(lid, staging, marker, described, Location.S3,
                                 options=dict(options))
            if described.get("current"):
                current.append(location)
            how = "its settings object" if len(described) > 1 else "no settings object"
            done.append(f"{location}: added back from its marker object ({how})")
    except Exception as exc:  # noqa: BLE001 (the server's answer, said in one line)
        undecided.append(f"s3://{settings.bucket}/{base}: {finder.explain(exc)}")
    return done + _current_again(current), undecided


def _add_back(lid, mount, marker, described, location_type, options=None):
    name = str(described.get("name") or f"Location {lid}")
    if Location.objects.filter(name=name).exists():
        name = f"{name} (id {lid})"
    with transaction.atomic():
        location = Location.objects.create(
            pk=lid, name=name, type=described.get("type", location_type), mount=mount,
            max_bytes=int(described.get("max_bytes") or shutil.disk_usage(mount).total),
            purge_watermark=int(described.get("purge_watermark", 80)),
            purge_enabled=bool(described.get("purge_enabled", False)),
            xml_folder=str(described.get("xml_folder", "")), marker=marker,
            options=options or {})
        # An id given explicitly: the next location added must not take it again.
        with connection.cursor() as cur:
            for statement in connection.ops.sequence_reset_sql(no_style(), [Location]):
                cur.execute(statement)
    return location
