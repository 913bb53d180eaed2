"""The purge records a bag carries, so a lost app database can be rebuilt (issue 20).

A purge deletes primary files because a verified copy holds them; the app database's
PurgedFile rows are the only record of which. Without them a restore cannot find the
bytes of a purged collection. So, when a purge (or a restore) finishes, every bag it
relied on gets a tag file, storagemanager-purged.txt, beside bag-info.txt: the purge
records that rely on that bag now, and the collections they belong to with what the
purge changed in OMERO (the original name, owner and group). `storagemanager rebuild`
reads it back (engine/rebuild.py).

The file is JSON, one object per line (paths may hold any character), written whole
under a temporary name, made durable and renamed: a reader sees the old file or the
new one, never half of one. It is not listed in the bag's tag manifest: the bag as
archived stays exactly as verified, and BagIt tools ignore an unlisted tag file. It is
a claim, not the truth: rebuild checks every record against the repository and OMERO
as they are now.

Written to a bag on a disk (write/, and a tape's read cache when the bag is there);
an S3 copy gets none yet, and a bag out of reach (a disk not connected, a copy on tape
only) is skipped and said so: rebuild then infers its records from the disk and OMERO.
"""
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

from ..backends.base import LocationError
from ..models import Collection, Copy, Location, PurgedFile
from . import beneath

TAG_FILE = "storagemanager-purged.txt"
FORMAT = "omero-storagemanager purge records"
VERSION = 1
# What a collection line carries: enough to give the row back its purged look.
COLLECTION_FIELDS = ("name", "owner_id", "owner_name", "group_id", "group_name",
                     "original_name", "original_owner_id", "original_group_id", "state")


class TagError(Exception):
    """A purge record file that cannot be read: the message names the file and line."""


@dataclass
class PurgeTag:
    written: str = ""
    collections: Dict[str, dict] = field(default_factory=dict)  # key -> COLLECTION_FIELDS
    files: List[dict] = field(default_factory=list)  # collection, relpath, size, sha1, ...


def _lines(copy):
    """The tag file's lines for `copy`: a header, its collections, its purge records."""
    live = PurgedFile.objects.filter(copy_file__copy=copy, state=PurgedFile.PURGED)
    yield {"format": FORMAT, "version": VERSION, "bag": copy.bag_path,
           "written": datetime.now(timezone.utc).isoformat()}
    keys = {}
    for c in Collection.objects.filter(pk__in=live.values("collection_id")).order_by("pk"):
        keys[c.pk] = c.key
        yield {"collection": c.key, **{name: getattr(c, name) for name in COLLECTION_FIELDS}}
    rows = live.order_by("pk").values_list("collection_id", "copy_file__relpath", "size",
                                           "sha1", "mode", "linked")
    for collection_id, relpath, size, sha1, mode, linked in rows.iterator(chunk_size=2000):
        yield {"file": relpath, "collection": keys[collection_id], "size": size,
               "sha1": sha1, "mode": mode, "linked": linked}


def bag_dirs(copy, backend):
    """The complete bags of `copy` on the location's disk (write/, a read cache), as
    paths relative to the location's root (backend.root)."""
    from ..backends.bag import is_complete_bag

    backend.check_online()
    found = []
    for top in (backend.write_root, backend.read_root):
        path = top / copy.bag_path
        if is_complete_bag(path):
            found.append(os.path.relpath(path, backend.root))
    return found


def write_lines(root, relpath, lines) -> None:
    """The lines (JSON objects) as root/relpath, written beneath the location's root
    (beneath.replace_file: no link on the way is followed) and renamed into place."""
    beneath.replace_file(root, relpath, (
        (json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        for line in lines), mode=0o644)  # like the bag's other tag files


def write_for_copy(copy, log=print) -> int:
    """Write the purge records relying on `copy` into its bag(s); how many were written
    (0 when none could be: the reason is logged, the purge itself stands)."""
    location = copy.location
    if location.type == Location.S3:
        log(f"purge records of {copy.bag_path}: not written to S3 location "
            f"{location.name!r} (a rebuild infers them from the repository and OMERO)")
        return 0
    try:
        backend = location.backend()
        bags = bag_dirs(copy, backend)
        for bag in bags:
            write_lines(backend.root, f"{bag}/{TAG_FILE}", _lines(copy))
    except (LocationError, OSError) as exc:
        log(f"purge records of {copy.bag_path} at {location.name!r} not written: {exc}")
        return 0
    if not bags:
        log(f"purge records of {copy.bag_path}: the bag is not on {location.name!r}'s disk "
            "now (on its medium only); not written")
    return len(bags)


def write_for_collection(collection, log=print) -> int:
    """After a purge or restore of `collection`: rewrite the records of every bag its
    purge records rely on (restored ones included: their bags must forget them)."""
    copy_ids = set(PurgedFile.objects.filter(collection=collection)
                   .values_list("copy_file__copy_id", flat=True))
    written = 0
    for copy in Copy.objects.filter(pk__in=copy_ids).select_related("location"):
        written += write_for_copy(copy, log)
    return written


def read(bag_dir) -> Optional[PurgeTag]:
    """The purge records in a bag, None when it has none (a bag written before them, or
    never relied on by a purge). Raises TagError on a file that is not one."""
    path = Path(bag_dir) / TAG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise TagError(f"{path}: cannot be read: {exc}") from None
    tag = PurgeTag()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise TagError(f"{path} line {number}: not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise TagError(f"{path} line {number}: not an object")
        if number == 1:
            if item.get("format") != FORMAT or item.get("version") != VERSION:
                raise TagError(f"{path}: not {FORMAT} version {VERSION}")
            tag.written = str(item.get("written", ""))
        elif "file" in item:
            problem = _bad_file_record(item)
            if problem:
                raise TagError(f"{path} line {number}: {problem}")
            tag.files.append(item)
        elif "collection" in item:
            tag.collections[item["collection"]] = item
        else:
            raise TagError(f"{path} line {number}: neither a file nor a collection")
    return tag


_SHA1 = re.compile(r"[0-9a-f]{40}")


def _bad_file_record(item):
    """Why a file record cannot be one this app wrote, or None. A restore writes the
    file back with this mode: never a set-user or set-group id bit from a bag."""
    def integer(value):
        return isinstance(value, int) and not isinstance(value, bool)

    if not isinstance(item.get("file"), str) or not isinstance(item.get("collection"), str):
        return "a file record without its path or collection"
    if not integer(item.get("size")) or item["size"] < 0:
        return f"size {item.get('size')!r} is not a number of bytes"
    if not isinstance(item.get("sha1"), str) or not _SHA1.fullmatch(item["sha1"]):
        return f"sha1 {item.get('sha1')!r} is not a SHA1"
    if not integer(item.get("mode")) or not 0 <= item["mode"] <= 0o1777:
        return f"mode {item.get('mode')!r} is not a file's permission bits"
    if not isinstance(item.get("linked", False), bool):
        return "linked is not true or false"
    return None
