"""Archive locations: one small base class (base.Backend) and one module per type.

    hdd        (removable) disks; copies stay in write/               hdd.py
    tape       disk cache backed up to tape; read cache in read/     tape.py
    automated  disk cache emptied by an archiver driven by XML orders automated.py
    symlink    always-mounted archive; purged files become links    symlink.py
    s3         a bucket and prefix of an S3 server (boto3)           s3.py, s3upload.py

Copies are BagIt bags (bag.py) at <mount>/<id>/write/<kind>/<group>/<user>/<id>/<datetime>
(layout.py). Backends know nothing of OMERO: they store and fetch bags at paths they own.
"""
from .automated import AutomatedBackend
from .base import (Backend, BadLocation, BadPath, CorruptCopy, LocationConfig,
                   LocationError, LocationOffline, validate_mount)
from .hdd import HddBackend
from .layout import Order, bag_relpath, order_description
from .s3 import S3Backend
from .symlink import SymlinkBackend
from .tape import TapeBackend

BACKENDS = {cls.type: cls for cls in (HddBackend, TapeBackend, AutomatedBackend,
                                      SymlinkBackend, S3Backend)}


def backend_for(config: LocationConfig) -> Backend:
    """The backend for a location's configuration; BadLocation for an unknown type."""
    try:
        cls = BACKENDS[config.type]
    except (KeyError, TypeError):
        raise BadLocation(f"unknown location type {config.type!r} for location "
                          f"{config.name!r}: use one of {', '.join(BACKENDS)}") from None
    return cls(config)


__all__ = [
    "AutomatedBackend", "BACKENDS", "Backend", "BadLocation", "BadPath", "CorruptCopy",
    "HddBackend", "LocationConfig", "LocationError", "LocationOffline", "Order", "S3Backend",
    "SymlinkBackend", "TapeBackend", "backend_for", "bag_relpath", "order_description",
    "validate_mount",
]
