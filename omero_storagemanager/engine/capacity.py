"""What a location holds now (issue 20): capacity that matches the medium.

An hdd or symlink location keeps every copy on its disk: its use is the sum of its
copies. A tape or automated location is a cache disk: a copy is written to write/ (the
tape software or the archiver takes it away) and to read/ (the read cache, purged down
to the watermark). Its "maximum size" is the cache disk's, so what counts is what is in
write/ and read/ now, measured on the disk; a copy in neither is "on the archive medium
only" (a restore has it brought back into read/). The figures are stored on the
Location with the time they were measured, for pages that must not walk the disk.
"""
from dataclasses import dataclass
from datetime import datetime, timezone

from django.db.models import F, Sum

from ..backends.base import walk_bags
from ..backends.fsutil import tree_bytes
from ..backends.layout import safe_relpath
from ..models import Copy, Location

CACHE_TYPES = (Location.TAPE, Location.AUTOMATED)
HELD = (Copy.WRITING, Copy.VERIFIED, Copy.FAILED_AUDIT)


@dataclass
class Usage:
    write_bytes: int = 0  # the write queue: copies the medium has not taken yet
    read_bytes: int = 0  # the read cache
    medium_only_bytes: int = 0  # copies in neither: on tape / in the archive only
    medium_only_copies: int = 0
    measured: datetime = None

    @property
    def cache_used(self):
        return self.write_bytes + self.read_bytes


def write_queue(backend):
    """{copy: bytes} of the complete bags in a cache location's write/: the copies the
    tape software (or the archiver) has not taken to the medium yet."""
    return {rel: tree_bytes(path) for rel, path in walk_bags(backend.write_root)}


def measure(location):
    """Walk a cache location's write/ and read/ now and store the figures (Usage)."""
    backend = location.backend()
    backend.check_online()
    write = write_queue(backend)
    read = {bag.relpath: bag.bytes for bag in backend.cache_bags()}
    usage = Usage(write_bytes=sum(write.values()), read_bytes=sum(read.values()),
                  measured=datetime.now(timezone.utc))
    for bag_path, nbytes in Copy.objects.filter(
            location=location, state__in=(Copy.VERIFIED, Copy.FAILED_AUDIT)) \
            .values_list("bag_path", "bytes"):
        if bag_path not in write and bag_path not in read:
            usage.medium_only_bytes += nbytes
            usage.medium_only_copies += 1
    Location.objects.filter(pk=location.pk).update(
        write_bytes=usage.write_bytes, read_bytes=usage.read_bytes,
        medium_only_bytes=usage.medium_only_bytes,
        medium_only_copies=usage.medium_only_copies, measured_at=usage.measured)
    return usage


def add_copy(location, backend, bag_path):
    """A copy just published on a cache location: its bags in write/ and read/ are added
    to the stored figures (this copy's files alone are walked; measured_at stays the
    time of the last full measure, which the next one replaces)."""
    if location.type not in CACHE_TYPES:
        return
    rel = safe_relpath(bag_path, "copy path")
    Location.objects.filter(pk=location.pk).update(
        write_bytes=F("write_bytes") + tree_bytes(backend.write_root / rel),
        read_bytes=F("read_bytes") + tree_bytes(backend.read_root / rel))


def used_bytes(location):
    """Bytes the location's disk holds for the app, as the maximum size counts them."""
    if location.type in CACHE_TYPES:
        return measure(location).cache_used
    return (Copy.objects.filter(location=location, state__in=HELD)
            .aggregate(total=Sum("bytes"))["total"] or 0)


def needed_bytes(location, nbytes):
    """Room a new copy of nbytes takes: twice on a cache disk (write/ and read/)."""
    return 2 * nbytes if location.type in CACHE_TYPES else nbytes


def figures(location):
    """The stored figures of a cache location for pages (None for other types)."""
    if location.type not in CACHE_TYPES:
        return None
    return {"write_bytes": location.write_bytes, "read_bytes": location.read_bytes,
            "medium_only_bytes": location.medium_only_bytes,
            "medium_only_copies": location.medium_only_copies,
            "measured_at": location.measured_at}
