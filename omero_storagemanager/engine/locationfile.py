"""What a location is, written beside its marker, so a rebuild can add it back (issue 20).

<mount>/<id>/.omero-storagemanager holds the location's marker (backends/base.py): it
says which location a disk is, not what kind. This file, <mount>/<id>/LOCATION_FILE,
says the rest as it was set when the location was added (name, type, maximum size,
watermark, XML folder): `storagemanager rebuild --location MOUNT` takes a location
back from it with its own id. A location made before it, or edited since, is taken
back with the options the rebuild is given; an admin adjusts the rest.
"""
import json
from pathlib import Path
from typing import Optional

from ..backends.fsutil import atomic_write_bytes
from ..models import Location

LOCATION_FILE = ".omero-storagemanager-location.json"
FIELDS = ("name", "type", "max_bytes", "purge_watermark", "purge_enabled", "xml_folder")


def write_description(location) -> None:
    """The location's settings into <mount>/<id>/ (not for S3: its marker is an object)."""
    if location.type == Location.S3:
        return
    root = location.backend().root
    text = json.dumps({name: getattr(location, name) for name in FIELDS}, indent=1)
    atomic_write_bytes(root / LOCATION_FILE, (text + "\n").encode("utf-8"))


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
