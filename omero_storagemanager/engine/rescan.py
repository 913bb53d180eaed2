"""Rescan reconciles a location's catalogue with its disk; removing a location (manual
7.4, 7.6; issue 20).

Rescan registers the bags it finds that the app does not know (validated: VERIFIED when
every hash matches, else FAILED_AUDIT), takes back a copy marked missing whose bag is
there again, and marks MISSING the copies whose bag is gone. On a tape or automated
location a bag gone from write/ and read/ is on the archive medium (the tape software
empties write/, the cache purge read/): only a disk (hdd, symlink) loses copies. The
report names the purged collections that no longer have any copy: nothing can restore
them, and the caller says so by e-mail.

A location may be removed once nothing depends on it: every copy on it is missing or
has each of its verified files in a verified copy on another location (the merge of two
disks into a new one: copy the bags over, rescan the new location, remove the old
ones). Removing it repoints the purge records at those other copies and forgets its own.
"""
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import List

from django.db import transaction
from django.db.models import Q

from ..backends.bag import validate_bag
from ..backends.base import LocationError
from ..models import Collection, Copy, CopyFile, Location, PurgedFile, S3Object
from . import filetags

RELIED_ON = (Copy.VERIFIED, Copy.FAILED_AUDIT, Copy.EVICTED)
MEDIUM_TYPES = (Location.TAPE, Location.AUTOMATED)


class LocationInUse(LocationError):
    pass


@dataclass
class RescanReport:
    added: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)  # copies whose bag vanished
    back: List[str] = field(default_factory=list)  # missing copies found again
    orphaned: List[str] = field(default_factory=list)  # purged collections left with no copy


def rescan(location):
    backend = location.backend()
    backend.check_online()
    report = RescanReport()
    copies = {c.bag_path: c for c in Copy.objects.filter(location=location)}
    found_paths = set()
    for found in backend.find_bags():
        found_paths.add(found.relpath)
        copy = copies.get(found.relpath)
        if copy is None:
            if _register(location, backend, found):
                report.added.append(found.relpath)
        elif copy.state == Copy.MISSING:
            problems, _ = _bag_problems(location, backend, found)
            copy.state = Copy.FAILED_AUDIT if problems else Copy.VERIFIED
            copy.verified_at = datetime.now(timezone.utc)
            copy.save(update_fields=["state", "verified_at"])
            report.back.append(found.relpath)
    if location.type in MEDIUM_TYPES:
        from .capacity import measure

        measure(location)  # gone from write/ and read/: on the medium only
    else:
        vanished = [c for path, c in copies.items()
                    if path not in found_paths and c.state in RELIED_ON]
        if vanished:
            Copy.objects.filter(pk__in=[c.pk for c in vanished]).update(state=Copy.MISSING)
            report.missing = sorted(c.bag_path for c in vanished)
            report.orphaned = orphaned_collections({c.collection_id for c in vanished})
    return report


def orphaned_collections(collection_ids):
    """Keys of the purged (or partly purged) collections among these with no copy left."""
    purged = Collection.objects.filter(
        pk__in=collection_ids, state__in=[Collection.PURGED, Collection.PARTIALLY_PURGED])
    kept = set(Copy.objects.filter(collection__in=purged, state__in=RELIED_ON)
               .values_list("collection_id", flat=True))
    return sorted(c.key for c in purged if c.pk not in kept)


def _s3_bag_problems(backend, found):
    """Every object of a found S3 copy read back against its manifest."""
    problems, sizes = [], {}  # relpath -> (size, ETag)
    for relpath, sha1 in found.contents.manifest.items():
        key = backend.payload_key(found.relpath, relpath)
        try:
            digest, size, etag = backend.read_sha1(key)
        except LocationError as exc:
            problems.append(f"{relpath}: {exc}")
            continue
        sizes[relpath] = (size, etag)
        if digest != sha1:
            problems.append(f"{relpath}: SHA1 {digest}, manifest {sha1}")
    return problems, sizes


def _bag_problems(location, backend, found):
    """(problems, {relpath: (size, ETag)} for S3 objects else None) of a found bag,
    every file hashed against its manifest."""
    if location.type == Location.S3:
        return _s3_bag_problems(backend, found)
    return validate_bag(found.contents.path, check_hashes=True), None


def _register(location, backend, found):
    return register_bag(location, backend, found) is not None


def _created(found):
    """When the copy was made: bag-info's exact time (bags since issue 20), else its
    name's (whole seconds)."""
    text = found.contents.info.get("OMERO-Copy-Created", [""])[0]
    try:
        when = datetime.fromisoformat(text)
        if when.tzinfo is not None:
            return when
    except ValueError:
        pass
    when = datetime.strptime(found.relpath.rsplit("/", 1)[1], "%d-%m-%Y_%H%M%S")
    return when.replace(tzinfo=timezone.utc)


_NAMED_ID = re.compile(r"(.*) \(id (\d+)\)")


def bag_owner(info):
    """(owner id, owner name, group id, group name) as bag-info says them ("alice (id
    5)"), None when it does not."""
    owner = _NAMED_ID.fullmatch(info.get("OMERO-Owner", [""])[0])
    group = _NAMED_ID.fullmatch(info.get("OMERO-Group", [""])[0])
    if owner and group:
        return int(owner.group(2)), owner.group(1), int(group.group(2)), group.group(1)
    return None


def register_bag(location, backend, found):
    """A Copy (with its CopyFile rows) for a bag found at the location, hashed against
    its manifest now: VERIFIED when every file matches, else FAILED_AUDIT. None when
    its bag-info names no Project or Screen. Rebuild (rebuild.py) calls it too."""
    info = found.contents.info
    kind = info.get("OMERO-Collection-Kind", [""])[0]
    oid = int(info.get("OMERO-Collection-Id", ["0"])[0] or 0)
    if kind not in ("project", "screen") or not oid:
        return None
    # A collection OMERO no longer has (else sync made it): known by its bag-info.
    owner_id, owner_name, group_id, group_name = bag_owner(info) or (0, "", 0, "")
    collection, _ = Collection.objects.get_or_create(
        kind=kind, omero_id=oid,
        defaults={"name": info.get("OMERO-Collection-Name", [""])[0], "owner_id": owner_id,
                  "owner_name": owner_name, "group_id": group_id, "group_name": group_name,
                  "gone": True})
    problems, sizes = _bag_problems(location, backend, found)
    records = filetags.read(found.contents.path) if sizes is None else None
    with transaction.atomic():
        copy = Copy.objects.create(
            collection=collection, location=location, bag_path=found.relpath,
            state=Copy.FAILED_AUDIT if problems else Copy.VERIFIED,
            created=_created(found), verified_at=datetime.now(timezone.utc))
        entries = []
        for relpath, sha1 in found.contents.manifest.items():
            mode = 0o644
            if sizes is not None:
                size = sizes.get(relpath, (0, ""))[0]
            else:  # the copy keeps its source's mode (copyfile.py): restore gives it back
                try:
                    st = os.lstat(os.path.join(found.contents.path, "data", relpath))
                    size, mode = st.st_size, st.st_mode & 0o7777
                except OSError:
                    size = 0
            # The bag's own record of the file, when it has one (filetags.py).
            mode, mtime_ns = filetags.mode_and_time((records or {}).get(relpath), mode)
            entries.append(CopyFile(copy=copy, relpath=relpath, size=size, checksum=sha1,
                                    verified=not problems, mode=mode,
                                    source_mtime_ns=mtime_ns,
                                    source_mtime=None if mtime_ns is None else mtime_ns / 1e9))
        CopyFile.objects.bulk_create(entries, batch_size=1000)
        if sizes is not None:  # the ETags read now: purge and audit check them from here on
            S3Object.objects.bulk_create(
                [S3Object(copy_file=e, etag=sizes[e.relpath][1]) for e in entries
                 if e.relpath in sizes], batch_size=1000)
        copy.files, copy.bytes = len(entries), sum(e.size for e in entries)
        copy.save(update_fields=["files", "bytes"])
    return copy


def _elsewhere(location):
    """Verified files on other locations: (relpath, checksum) -> a CopyFile id."""
    rows = (CopyFile.objects.filter(verified=True, copy__state=Copy.VERIFIED)
            .exclude(copy__location=location).values_list("relpath", "checksum", "pk"))
    return {(relpath, checksum): pk for relpath, checksum, pk in rows.iterator()}


def removal_blockers(location):
    """Why the location cannot be removed now ([] when it can)."""
    elsewhere = _elsewhere(location)
    blockers = []
    for copy in Copy.objects.filter(location=location).exclude(state=Copy.MISSING) \
            .select_related("collection"):
        entries = list(copy.entries.values_list("relpath", "checksum", "verified"))
        lacking = sum(1 for relpath, checksum, verified in entries
                      if not verified or (relpath, checksum) not in elsewhere)
        # A copy whose files are not all recorded cannot be shown to be elsewhere.
        lacking += max(0, copy.files - len(entries))
        if lacking:
            blockers.append(f"{copy.collection.key}: {lacking} file(s) of copy "
                            f"{copy.bag_path} are on no other location")
    return blockers


def remove_location(location):
    """Remove a location nothing depends on (see removal_blockers); LocationInUse else."""
    with transaction.atomic():
        blockers = removal_blockers(location)
        if blockers:
            raise LocationInUse(
                f"location {location.name!r} (id {location.pk}) holds copies found nowhere "
                f"else: {'; '.join(blockers[:3])}" + (" ..." if len(blockers) > 3 else "")
                + "; copy them to another location and rescan it, or rescan this one if "
                "its bags are gone")
        elsewhere = _elsewhere(location)
        repointed = set()
        for purged in PurgedFile.objects.filter(copy_file__copy__location=location) \
                .select_related("copy_file"):
            replacement = elsewhere.get((purged.copy_file.relpath, purged.copy_file.checksum))
            if replacement is None:
                raise LocationInUse(f"{purged.path} was purged relying on copy "
                                    f"{purged.copy_file.copy.bag_path} alone")
            PurgedFile.objects.filter(pk=purged.pk).update(copy_file_id=replacement)
            repointed.add(replacement)
        doomed = Copy.objects.filter(location=location)
        Copy.objects.filter(~Q(location=location), parent__in=doomed).update(parent=None)
        # Children before parents: incremental copies on this location chain to each other.
        while doomed.exists():
            leaves = doomed.exclude(pk__in=Copy.objects.filter(parent__isnull=False,
                                                               location=location)
                                    .values("parent"))
            leaves.delete()
        location.delete()
    # The bags now relied on carry the records (purgetags.py: what a rebuild reads).
    from .purgetags import write_for_copy

    for copy in Copy.objects.filter(entries__in=repointed).distinct().select_related(
            "location"):
        write_for_copy(copy, log=lambda line: None)
