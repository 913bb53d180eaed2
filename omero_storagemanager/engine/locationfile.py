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
    """The location's settings into <mount>/<id>/ (not for S3: its marker is an object)."""
    if location.type == Location.S3:
        return
    root = location.backend().root
    text = json.dumps({name: getattr(location, name) for name in FIELDS}, indent=1)
    atomic_write_bytes(root / LOCATION_FILE, (text + "\n").encode("utf-8"))


def refresh_descriptions(locations=None) -> None:
    """After an edit: the file of every location whose disk is there now, rewritten (a
    disk not connected keeps its older file; a rebuild then says what it took)."""
    for location in locations if locations is not None else Location.objects.all():
        try:
            if location.type != Location.S3 and location.backend().is_online():
                write_description(location)
        except (LocationError, OSError):
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
    if len(current) == 1 and not Location.objects.filter(current=True).exists():
        Location.objects.filter(pk=current[0].pk).update(current=True)
        done.append(f"{current[0]}: the current target of new archives, as it said")
    return done, undecided


def _add_back(lid, mount, marker, described, location_type):
    name = str(described.get("name") or f"Location {lid}")
    if Location.objects.filter(name=name).exists():
        name = f"{name} (id {lid})"
    with transaction.atomic():
        location = Location.objects.create(
            pk=lid, name=name, type=described.get("type", location_type), mount=mount,
            max_bytes=int(described.get("max_bytes") or shutil.disk_usage(mount).total),
            purge_watermark=int(described.get("purge_watermark", 80)),
            purge_enabled=bool(described.get("purge_enabled", False)),
            xml_folder=str(described.get("xml_folder", "")), marker=marker)
        # An id given explicitly: the next location added must not take it again.
        with connection.cursor() as cur:
            for statement in connection.ops.sequence_reset_sql(no_style(), [Location]):
                cur.execute(statement)
    return location
