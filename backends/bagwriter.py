"""Writing a bag (BagWriter): payload recorded as it is verified, tag files at the end.

A bag is built in a sibling directory named "<bag>.partial" and renamed to its final
name only once every tag file is on disk, so a bag under its final name is always
whole and a ".partial" one is never taken for a copy.

Apart from the format (bagformat.py) and the checks (bagcheck.py) because writing has
its own state: the records file in the work directory and the sorted runs merged from it
into the manifest, so a bag of any size costs the writer little memory.
"""
import hashlib
import heapq
import os
import re
import stat
from datetime import date
from pathlib import Path
from typing import Dict, Iterator, List, Tuple, Union

from .bagformat import (BAGIT_VERSION, MANIFEST_ALGORITHM, BagError, _count_payload,
                        decode_path, encode_path, format_tags, payload_files)
from .fsutil import atomic_write_bytes, fsync_dir, fsync_file, makedirs_durable
from .layout import PARTIAL_SUFFIX, is_transient, safe_relpath

_SHA1_HEX = re.compile(r"[0-9a-f]{40}")
RECORDS = ".records"  # the writer's appended records, in the work directory only
# Read at each finish(), from this module: patch bagwriter.SORT_RUN (not bag.SORT_RUN).
SORT_RUN = 20_000  # records sorted in memory at once when finishing (a few MB)


def _software_agent() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return f"omero-storagemanager {version('omero-storagemanager')}"
    except (ImportError, PackageNotFoundError):
        return "omero-storagemanager"


class BagWriter:
    """Builds a bag in '<final_dir>.partial', then renames it to final_dir.

    The caller writes each payload file itself at payload_path(relpath), verifies it,
    and record()s its SHA1 and size; finish() writes the tag files and publishes.

    Records are appended to a file in the work directory (RECORDS), not held in memory:
    a bag of a million files costs the writer no more memory than a bag of ten.
    finish() sorts them in runs of SORT_RUN lines (an external merge sort) into the
    manifest and removes the file before the rename, so the final bag holds only what
    RFC 8493 names."""

    def __init__(self, final_dir):
        self._setup(final_dir)
        if self.final_dir.exists():
            raise BagError(f"bag {self.final_dir} exists already")
        if self.work_dir.exists():
            raise BagError(f"{self.work_dir} exists: an interrupted bag, reopen it with "
                           "BagWriter.resume()")
        makedirs_durable(self.final_dir.parent)
        self.work_dir.mkdir()
        (self.work_dir / "data").mkdir()
        fsync_dir(self.work_dir)
        fsync_dir(self.final_dir.parent)
        self._records_path.write_bytes(b"")

    @classmethod
    def resume(cls, final_dir) -> "BagWriter":
        """Reopen an interrupted bag. Nothing is recorded: the caller re-records what it
        re-verifies (and removes what it does not), so the records file starts empty."""
        writer = cls.__new__(cls)
        writer._setup(final_dir)
        if writer.final_dir.exists():
            raise BagError(f"bag {writer.final_dir} is finished already")
        if not writer.work_dir.is_dir():
            raise BagError(f"no interrupted bag at {writer.work_dir}")
        (writer.work_dir / "data").mkdir(exist_ok=True)
        writer._records_path.write_bytes(b"")
        return writer

    def _setup(self, final_dir):
        self.final_dir = Path(final_dir)
        if is_transient(self.final_dir.name):
            raise ValueError(f"a bag's name must not end with a work suffix: {final_dir}")
        self.work_dir = self.final_dir.with_name(self.final_dir.name + PARTIAL_SUFFIX)
        # Not durable (never fsynced): after a crash the caller re-records from its own
        # durable state (the archive's CopyFile rows), and resume() empties it.
        self._records_path = self.work_dir / RECORDS
        self._records_file = None

    def payload_path(self, relpath: str) -> Path:
        target = self.work_dir / "data" / safe_relpath(relpath, "payload path")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def record(self, relpath: str, sha1_hex: str, size: int) -> None:
        """Record a verified payload file; recording a path again replaces its record."""
        safe_relpath(relpath, "payload path")
        try:
            relpath.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"payload path is not valid Unicode: {relpath!r}") from None
        digest = str(sha1_hex).lower()
        if not _SHA1_HEX.fullmatch(digest):
            raise ValueError(f"not a SHA1 hex digest: {sha1_hex!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be a non-negative integer, not {size!r}")
        if self._records_file is None:
            self._records_file = open(self._records_path, "a", encoding="utf-8", newline="\n")
        # One line per record; the path is encoded as in a manifest, so it is one line.
        self._records_file.write(f"{digest} {size} {encode_path(relpath)}\n")

    def close_records(self):
        """Close the records file until the next record: callers recording in batches
        call this after each, so no file on the location stays open for writing
        between batches (a disk can then be remounted or unmounted cleanly)."""
        if self._records_file is not None:
            self._records_file.close()
            self._records_file = None

    _close_records = close_records

    def _sorted_records(self) -> Iterator[Tuple[str, str, int]]:
        """(relpath, sha1, size) in relpath order, the last record of a path winning;
        sorted in runs of SORT_RUN records written beside the records file, then merged."""
        self._close_records()
        runs, run = [], []

        def spill():
            run.sort()
            # ".*.tmp": a killed finish's runs are strays the next finish removes.
            path = self.work_dir / f"{RECORDS}-run{len(runs)}.tmp"
            with open(path, "w", encoding="utf-8", newline="\n") as out:
                out.writelines(f"{seq} {digest} {size} {encode_path(rel)}\n"
                               for rel, seq, digest, size in run)
            runs.append(path)
            run.clear()

        def read_run(path):
            with open(path, encoding="utf-8", newline="\n") as f:
                for line in f:
                    seq, digest, size, encoded = line.rstrip("\n").split(" ", 3)
                    yield decode_path(encoded), int(seq), digest, int(size)

        try:
            with open(self._records_path, encoding="utf-8", newline="\n") as f:
                for seq, line in enumerate(f):
                    digest, size, encoded = line.rstrip("\n").split(" ", 2)
                    run.append((decode_path(encoded), seq, digest, int(size)))
                    if len(run) >= SORT_RUN:
                        spill()
            merged = heapq.merge(*(read_run(p) for p in runs), iter(sorted(run)))
            previous = None
            for item in merged:  # ordered by (relpath, seq): keep each path's last
                if previous is not None and previous[0] != item[0]:
                    yield previous[0], previous[2], previous[3]
                previous = item
            if previous is not None:
                yield previous[0], previous[2], previous[3]
        finally:
            for path in runs:
                path.unlink(missing_ok=True)

    def recorded(self) -> Dict[str, Tuple[str, int]]:
        """Every record, in memory (for tests and small bags; finish() never calls it)."""
        return {rel: (digest, size) for rel, digest, size in self._sorted_records()}

    def finish(self, info: Dict[str, Union[str, List[str]]], fsync_payload: bool = True) -> Path:
        """Write the tag files and rename the bag to its final name. Refuses when a
        recorded file is missing or of another size, or a payload file is unrecorded."""
        if "Payload-Oxum" in info:
            raise ValueError("Payload-Oxum is computed by the bag writer, not given")
        for stray in self.work_dir.glob(".*.tmp"):
            stray.unlink()  # an interrupted finish's temporary tag file
        data = self.work_dir / "data"
        name = f"manifest-{MANIFEST_ALGORITHM}.txt"
        manifest_tmp = self.work_dir / f".{name}.stream.tmp"
        # The manifest is written as the records stream by (checking each file on the
        # way), never built in memory; it gets its final name only once all is well.
        problems, total, count, present = [], 0, 0, 0
        digest_of_manifest = hashlib.sha1()
        with open(manifest_tmp, "wb") as out:
            for rel, digest, size in self._sorted_records():
                try:
                    st = os.lstat(data / rel)
                    found = st.st_size if stat.S_ISREG(st.st_mode) else None
                except FileNotFoundError:
                    found = None
                if found is None:
                    problems.append(f"data/{encode_path(rel)} was recorded but is missing")
                else:
                    present += 1
                    if found != size:
                        problems.append(f"data/{encode_path(rel)} is {found} bytes, "
                                        f"recorded {size}")
                line = f"{digest}  data/{encode_path(rel)}\n".encode("utf-8")
                out.write(line)
                digest_of_manifest.update(line)
                total, count = total + size, count + 1
            out.flush()
            os.fsync(out.fileno())
        try:
            on_disk, odd = _count_payload(data)
            problems += odd
            if on_disk != present:
                # Recorded files are distinct, so more on disk than recorded and present
                # means some were never recorded: name them (memory only on this failure).
                names, _ = payload_files(data)
                recorded = {rel for rel, _, _ in self._sorted_records()}
                problems += [f"data/{encode_path(rel)} was never recorded (remove it or "
                             "record it)" for rel in sorted(set(names) - recorded)]
            if problems:
                raise BagError(f"cannot finish bag {self.final_dir}: " + "; ".join(problems))
            if self.final_dir.exists():
                raise BagError(f"bag {self.final_dir} exists already")
        except BaseException:
            manifest_tmp.unlink(missing_ok=True)
            raise
        self._sync_payload(data, fsync_payload)
        items = []
        for label, value in info.items():
            items += [(label, v) for v in value] if isinstance(value, list) else [(label, value)]
        labels = {label for label, _ in items}
        if "Bagging-Date" not in labels:
            items.append(("Bagging-Date", date.today().isoformat()))
        if "Bag-Software-Agent" not in labels:
            items.append(("Bag-Software-Agent", _software_agent()))
        items.append(("Payload-Oxum", f"{total}.{count}"))
        tag_files = {
            "bagit.txt": format_tags([("BagIt-Version", BAGIT_VERSION),
                                      ("Tag-File-Character-Encoding", "UTF-8")]),
            "bag-info.txt": format_tags(items),
        }
        tagmanifest = []
        for tag_name, text in tag_files.items():
            raw = text.encode("utf-8")
            atomic_write_bytes(self.work_dir / tag_name, raw)
            tagmanifest.append(f"{hashlib.sha1(raw).hexdigest()}  {tag_name}\n")
        os.chmod(manifest_tmp, 0o644)
        os.rename(manifest_tmp, self.work_dir / name)
        tagmanifest.append(f"{digest_of_manifest.hexdigest()}  {name}\n")
        atomic_write_bytes(self.work_dir / f"tagmanifest-{MANIFEST_ALGORITHM}.txt",
                           "".join(tagmanifest).encode("utf-8"))
        self._records_path.unlink(missing_ok=True)  # not part of the bag
        fsync_dir(self.work_dir)
        os.rename(self.work_dir, self.final_dir)
        fsync_dir(self.final_dir.parent)
        return self.final_dir

    def _sync_payload(self, data: Path, fsync_payload: bool) -> None:
        # Files first, then every directory holding them, deepest first, so the renamed
        # bag never names a file or directory that a power cut could still take away.
        # scandir, not os.walk: os.walk lists a folder's names at once, and one folder
        # may hold a whole collection's files.
        directories, stack = [], [os.fspath(data)]
        while stack:
            top = stack.pop()
            directories.append(top)
            with os.scandir(top) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif fsync_payload:
                        fsync_file(entry.path)
        for directory in sorted(directories, key=len, reverse=True):
            fsync_dir(directory)
        fsync_dir(self.work_dir)
