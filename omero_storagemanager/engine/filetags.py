"""What a bag says of its files beyond its manifest, for a rebuild (issue 20).

The manifest holds each file's path and SHA1. The app also knows, per copied file, its
mode, its modification time when copied (an archive compares it to tell a changed file
OMERO keeps no checksum of, Pixels/) and the primary file's identity then (device,
inode, size, times: PrimaryFile, which lets a purge trust a primary without reading
it). An archive writes them into storagemanager-files.txt once the bag is verified,
beside its tag files (JSON, one object per line, written whole then renamed, not in
the tag manifest: purgetags.py's rules). A rebuild takes the mode and time back with
the copy, and a primary's identity only while the primary file still has it now.

Written to bags on a disk; an S3 copy gets none (a rebuild then re-reads primaries,
and the next archive copies Pixels/ files again).
"""
import json
import os
from pathlib import Path
from typing import Dict, Optional

from ..backends.base import LocationError
from ..models import CopyFile, Location, PrimaryFile
from .purgetags import bag_dirs, write_lines

TAG_FILE = "storagemanager-files.txt"
FORMAT = "omero-storagemanager files"
VERSION = 1
CHUNK = 2000


def _lines(copy):
    yield {"format": FORMAT, "version": VERSION, "bag": copy.bag_path}
    rows = CopyFile.objects.filter(copy=copy).order_by("pk").values_list(
        "relpath", "mode", "source_mtime_ns")
    chunk = []
    for row in rows.iterator(chunk_size=CHUNK):
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield from _chunk_lines(chunk)
            chunk = []
    yield from _chunk_lines(chunk)


def _chunk_lines(chunk):
    primaries = {p.relpath: p for p in PrimaryFile.objects.filter(
        relpath__in=[relpath for relpath, _, _ in chunk])}
    for relpath, mode, mtime_ns in chunk:
        line = {"file": relpath, "mode": mode, "mtime_ns": mtime_ns}
        primary = primaries.get(relpath)
        if primary is not None:
            line["primary"] = [*primary.identity(), primary.sha1]
        yield line


def write_for_copy(copy, backend, log=print) -> int:
    """After an archive verified the copy: its files' records into its bag(s). A
    failure is logged, never the archive's: the copy is whole without them."""
    if copy.location.type == Location.S3:
        return 0
    try:
        bags = bag_dirs(copy, backend)
        for bag in bags:
            write_lines(backend.root, f"{bag}/{TAG_FILE}", _lines(copy))
    except (LocationError, OSError) as exc:
        log(f"file records of {copy.bag_path} not written: {exc}")
        return 0
    return len(bags)


def read(bag_dir) -> Optional[Dict[str, dict]]:
    """relpath -> {mode, mtime_ns, primary} of a bag, None when it has no such file or
    it cannot be read (then nothing is taken from it: the defaults are safe)."""
    try:
        text = (Path(bag_dir) / TAG_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = {}
    for number, line in enumerate(text.splitlines()):
        try:
            item = json.loads(line)
        except ValueError:
            return None
        if number == 0:
            if not isinstance(item, dict) or item.get("format") != FORMAT:
                return None
            continue
        if isinstance(item, dict) and isinstance(item.get("file"), str):
            found[item["file"]] = item
    return found


def _integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def mode_and_time(record, default_mode):
    """(mode, mtime_ns) a file record gives, the default mode and None for what it
    does not (a mode with a set-id bit is never taken from a bag)."""
    mode = record.get("mode") if record else None
    mtime = record.get("mtime_ns") if record else None
    return (mode if _integer(mode) and 0 <= mode <= 0o1777 else default_mode,
            mtime if _integer(mtime) else None)


def primaries_still_there(records, paths) -> list:
    """PrimaryFile rows of the records whose primary file has now exactly the identity
    recorded when it was copied (lstat: device, inode, size, mtime and ctime in ns);
    any difference, or no such file, and the purge reads it as it would have anyway."""
    rows = []
    for relpath, record in records.items():
        primary = record.get("primary")
        if not (isinstance(primary, list) and len(primary) == 6
                and all(_integer(v) for v in primary[:5]) and isinstance(primary[5], str)):
            continue
        try:
            st = os.lstat(os.path.join(*paths.root_of(relpath)))
        except OSError:
            continue
        now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if now == tuple(primary[:5]) and st.st_nlink == 1:
            rows.append(PrimaryFile(relpath=relpath, device=now[0], inode=now[1],
                                    size=now[2], mtime_ns=now[3], ctime_ns=now[4],
                                    sha1=primary[5]))
    return rows
