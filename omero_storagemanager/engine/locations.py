"""Archive locations: add, remove, purge the read cache, rescan, audit.

A location is only written to when its <mount>/<id>/ directory is there and holds the
location's marker (checked by the backend: another disk mounted at the same place is
refused); adding a location creates it with a new marker; rescanning and removing one
are in rescan.py.
"""
import math
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import List

from django.db import transaction

from ..backends.bag import validate_bag
from ..backends.base import BadLocation, LocationError, validate_mount
from ..models import Copy, CopyFile, Job, Location, PurgedFile
from . import capacity
from .hashing import hash_file
from .locationfile import refresh_descriptions, write_description
# Rescan and removal reconcile the catalogue with the disk: rescan.py.
from .rescan import LocationInUse, remove_location, rescan  # noqa: F401


def add_location(name, type, mount, max_bytes, purge_watermark=80, purge_enabled=False,
                 xml_folder="", current=False, options=None):
    """Create a location and its <mount>/<id>/{read,write}; nothing is left on failure.
    Type s3: options are its S3 settings (backends/s3.py S3Settings), mount the local
    folder restores stage copies in; the marker object is written into the bucket."""
    mount = validate_mount(mount, "staging folder" if type == Location.S3 else "mount point")
    if type not in dict(Location.TYPES):
        raise BadLocation(f"unknown location type {type!r} (one of "
                          + ", ".join(dict(Location.TYPES)) + ")")
    options = dict(options or {})
    if type == Location.S3:
        from ..backends.s3 import S3Settings

        S3Settings.from_options(options)
    elif options:
        raise BadLocation(f"a location of type {type} takes no S3 settings")
    if type == Location.AUTOMATED:
        if not xml_folder:
            raise BadLocation("an automated location needs an XML folder for its orders")
        xml_folder = validate_mount(xml_folder)
    if max_bytes <= 0:
        raise BadLocation("maximum size must be positive")
    check_watermark(purge_watermark, purge_enabled)
    with transaction.atomic():
        location = Location.objects.create(
            name=name, type=type, mount=mount, max_bytes=max_bytes,
            purge_watermark=purge_watermark, purge_enabled=purge_enabled,
            xml_folder=xml_folder, current=False, marker=str(uuid.uuid4()),
            options=options)
        location.backend().initialize()  # writes the marker into <mount>/<id>/
        if current:
            make_current(location)
        write_description(location)  # and what it is, for a rebuild (locationfile.py)
    return location


def check_watermark(purge_watermark, purge_enabled):
    """The read cache is purged down to the watermark (percent of the maximum size).
    0 says "purging is not used" (manual chapter 13's USB disks): only with purging off,
    as purging down to nothing would empty the cache."""
    if isinstance(purge_watermark, bool) or not isinstance(purge_watermark, int) \
            or not 0 <= purge_watermark <= 100:
        raise BadLocation("the purge watermark must be a whole number of percent, 0-100 "
                          "(0: purging is not used)")
    if purge_enabled and purge_watermark == 0:
        raise BadLocation("a purge watermark of 0 means purging is not used: set 1-100 % "
                          "to enable purging")


def edit_s3_settings(location, changes):
    """Change an S3 location's settings (backends/s3.py S3Settings). The bucket,
    prefix or endpoint may change only to a place holding this location's marker (the
    objects moved or replicated there): the new place is checked before it is saved."""
    from ..backends.s3 import S3Settings

    if location.type != Location.S3:
        raise BadLocation(f"location {location.name!r} is of type {location.type}: it has "
                          "no S3 settings")
    if not isinstance(changes, dict):
        raise BadLocation("S3 settings must be an object")
    options = {**(location.options or {}), **changes}
    S3Settings.from_options(options)
    moved = any(options.get(k) != (location.options or {}).get(k)
                for k in ("bucket", "prefix", "endpoint_url"))
    previous, location.options = location.options, options
    if moved:
        try:
            location.backend().check_online()  # the marker must be there already
        except LocationError:
            location.options = previous
            raise
    Location.objects.filter(pk=location.pk).update(options=options)
    refresh_descriptions([location])  # what a rebuild reads (locationfile.py)
    return location


def record_marker(location, marker):
    """A location made before markers existed got its marker file at its first check
    while online (backends/base.py): the database keeps it from now on. Only over an
    empty marker: a marker once recorded is never replaced from a disk."""
    Location.objects.filter(pk=location.pk, marker="").update(marker=marker)
    location.marker = marker


def make_current(location):
    with transaction.atomic():
        previous = list(Location.objects.filter(current=True).exclude(pk=location.pk))
        Location.objects.exclude(pk=location.pk).update(current=False)
        Location.objects.filter(pk=location.pk).update(current=True)
    location.current = True
    for other in previous:
        other.current = False
    refresh_descriptions([location, *previous])  # what a rebuild reads (locationfile.py)


def current_location():
    location = Location.objects.filter(current=True).first()
    if location is None:
        raise LocationError("no current archive location: add one and make it current")
    return location


@dataclass
class CachePurge:
    evicted: List[str] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)  # over the watermark, not on the medium yet
    freed_bytes: int = 0
    cache_bytes: int = 0
    limit: int = 0


def purge_read_cache(location):
    """Evict the oldest bags from a tape/automated read cache down to the watermark,
    but none an active restore still needs (restore_needs). A copy still in write/ is
    not on the medium yet: its read/ copy stays (kept), as a restore could only ask for
    it from a tape that does not hold it."""
    backend = location.backend()
    if not backend.has_read_cache:
        raise LocationError(f"location {location.name!r} is of type {location.type}: "
                            "it has no read cache to purge")
    if not location.purge_enabled:
        raise LocationError(f"purging is not enabled for location {location.name!r}")
    backend.check_online()
    bags = backend.cache_bags()
    queued = capacity.write_queue(backend)
    limit = location.max_bytes * location.purge_watermark // 100
    result = CachePurge(cache_bytes=sum(b.bytes for b in bags), limit=limit)
    used = result.cache_bytes
    needed = restore_needs(location)
    for bag in bags:  # oldest first
        if used <= limit:
            break
        if bag.relpath in queued:
            result.kept.append(bag.relpath)
            continue
        if bag.relpath in needed:
            continue
        backend.evict(bag.relpath)
        used -= bag.bytes
        result.evicted.append(bag.relpath)
        result.freed_bytes += bag.bytes
    capacity.measure(location)  # the figures pages show: write queue, cache, tape only
    return result


def restore_needs(location):
    """Bag paths at `location` holding files that a queued, running or waiting restore
    has still to bring back. A copy that came back from tape or the jukebox for it keeps
    the datetime it was archived at, so it is the oldest in the cache: evicted before
    the restore's next look, it would only be asked for again."""
    pending = PurgedFile.objects.filter(collection__jobs__kind="restore",
                                        collection__jobs__state__in=Job.ACTIVE)
    return set(Copy.objects.filter(location=location,
                                   entries__relpath__in=pending.values("relpath"))
               .values_list("bag_path", flat=True).distinct())


@dataclass
class AuditReport:
    audited: int = 0
    failed: List[str] = field(default_factory=list)
    unreachable: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)


def audit(location=None, fraction=1.0, now=None):
    """Re-hash copies against their manifests: all, or the `fraction` least recently
    audited (a rolling audit). A copy that fails is marked FAILED_AUDIT and its bad
    files unverified, so purge and restore stop relying on them."""
    now = now or datetime.now(timezone.utc)
    copies = Copy.objects.filter(state__in=[Copy.VERIFIED, Copy.FAILED_AUDIT])
    if location is not None:
        copies = copies.filter(location=location)
    copies = list(copies.select_related("location").order_by("last_audit", "created"))
    report = AuditReport()
    for copy in copies[:math.ceil(len(copies) * fraction)]:
        backend = copy.location.backend()
        if copy.location.type == Location.S3:  # objects: HEAD and read back (s3check)
            _audit_s3(copy, backend, report, now)
            continue
        bag = backend.restore_source(copy.bag_path) if backend.is_online() else None
        if bag is None:
            report.unreachable.append(f"{copy.location.name}: {copy.bag_path}")
            continue
        # Each file against the app's own record of it, then the bag's structure.
        bad = []
        for entry in copy.entries.all():
            try:
                digest, _ = hash_file(os.path.join(bag, "data", entry.relpath), "SHA1-160")
            except OSError as exc:
                bad.append((entry, exc.strerror or "unreadable"))
                continue
            if digest != entry.checksum:
                bad.append((entry, "checksum mismatch"))
        problems = [f"{e.relpath}: {why}" for e, why in bad]
        problems += validate_bag(bag, check_hashes=False)
        report.audited += 1
        with transaction.atomic():
            copy.last_audit, copy.last_audit_ok = now, not problems
            if problems:
                copy.state = Copy.FAILED_AUDIT
                report.failed.append(f"{copy.location.name}: {copy.bag_path}")
                report.problems.extend(f"{copy.bag_path}: {p}" for p in problems)
                CopyFile.objects.filter(pk__in=[e.pk for e, _ in bad]).update(verified=False)
            copy.save()
    return report


def _audit_s3(copy, backend, report, now):
    from ..backends.base import LocationOffline
    from .s3check import audit_copy

    try:
        bad = audit_copy(copy, backend)
    except LocationOffline as exc:
        report.unreachable.append(f"{copy.location.name}: {copy.bag_path} ({exc})")
        return
    report.audited += 1
    problems = [f"{e.relpath if e else copy.bag_path}: {why}" for e, why in bad]
    with transaction.atomic():
        copy.last_audit, copy.last_audit_ok = now, not problems
        if problems:
            copy.state = Copy.FAILED_AUDIT
            report.failed.append(f"{copy.location.name}: {copy.bag_path}")
            report.problems.extend(f"{copy.bag_path}: {p}" for p in problems)
            CopyFile.objects.filter(pk__in=[e.pk for e, _ in bad if e]).update(verified=False)
        copy.save()
