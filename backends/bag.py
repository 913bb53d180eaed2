"""BagIt bags (RFC 8493), written and checked here, with no dependency.

A copy is a bag so that any BagIt tool can check it without this app:

    <bag>/bagit.txt              BagIt-Version: 1.0, Tag-File-Character-Encoding: UTF-8
    <bag>/bag-info.txt           what was archived (OMERO ids, names, owner, group, ...)
    <bag>/manifest-sha1.txt      "<sha1>  data/<path>" for every payload file
    <bag>/tagmanifest-sha1.txt   "<sha1>  <tag file>" for the three files above
    <bag>/data/<path>            the payload, at its path below the OMERO data directory

A bag is built in a sibling directory named "<bag>.partial" and renamed to its final
name only once every tag file is on disk, so a bag under its final name is always
whole and a ".partial" one is never taken for a copy.
"""
import hashlib
import heapq
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Dict, Iterator, List, Tuple, Union

from .fsutil import atomic_write_bytes, fsync_dir, fsync_file, makedirs_durable
from .layout import PARTIAL_SUFFIX, is_transient, safe_relpath

MANIFEST_ALGORITHM = "sha1"
BAGIT_VERSION = "1.0"
# Preference when a bag (written by another tool) has several payload manifests.
_ALGORITHM_PREFERENCE = ("sha1", "sha256", "sha512", "md5")
_SHA1_HEX = re.compile(r"[0-9a-f]{40}")
RECORDS = ".records"  # the writer's appended records, in the work directory only
SORT_RUN = 20_000  # records sorted in memory at once when finishing (a few MB)
_LINE = re.compile(r"([0-9A-Fa-f]+)[ \t]+(.+)")


class BagError(Exception):
    """A bag cannot be written or read; the message says which file and why."""


def encode_path(path: str) -> str:
    """RFC 8493 2.1.3: in manifests, CR, LF and % (only those) are percent-encoded.
    (bagit-python 1.9 encodes CR and LF but not %: its issue #157.)"""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


_ENCODED = re.compile(r"%(25|0[AaDd])")


def decode_path(text: str) -> str:
    # Only the three sequences the RFC produces; any other '%' stays as it is.
    return _ENCODED.sub(lambda m: {"25": "%", "0A": "\n", "0D": "\r"}[m.group(1).upper()],
                        text)


def _check_label(label: str) -> None:
    if (not isinstance(label, str) or not label or ":" in label or label != label.strip()
            or any(ord(c) < 32 for c in label)):
        raise ValueError(f"not a valid bag-info label: {label!r}")


def format_tags(items: List[Tuple[str, str]]) -> str:
    """'Label: value' lines; a line break in a value continues on a line indented by
    whitespace (RFC 8493 2.2.2), so it never starts a new label."""
    lines = []
    for label, value in items:
        _check_label(label)
        text = str(value).replace("\r\n", "\n").replace("\r", "\n")
        first, *rest = text.split("\n")
        lines.append(f"{label}: {first}")
        lines.extend("  " + line for line in rest)
    return "".join(line + "\n" for line in lines)


def parse_tags(text: str, name: str = "tag file") -> Dict[str, List[str]]:
    """Labels -> values (a label may repeat). Continuation lines lose their leading
    whitespace and keep the line break before them."""
    tags: Dict[str, List[str]] = {}
    current = None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            continue
        if line[0] in " \t":
            if current is None:
                raise BagError(f"{name}: a continuation line comes before any label")
            current.append(line.lstrip(" \t"))
            continue
        if ":" not in line:
            raise BagError(f"{name}: not a 'Label: value' line: {line!r}")
        label, value = line.split(":", 1)
        current = [value[1:] if value[:1] in (" ", "\t") else value]
        tags.setdefault(label.strip(), []).append(current)
    return {label: ["\n".join(parts) for parts in values] for label, values in tags.items()}


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BagError(f"{path.name} is missing in {path.parent}") from None
    except UnicodeDecodeError as exc:
        raise BagError(f"{path} is not UTF-8: {exc}") from None


def parse_manifest(path: Path, payload: bool) -> Dict[str, str]:
    """path -> lower-case hex. Payload manifests: paths below data/, without 'data/'."""
    entries: Dict[str, str] = {}
    for number, line in enumerate(_read_text(path).replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line)
        if not match:
            raise BagError(f"{path.name} line {number}: not '<checksum> <path>': {line!r}")
        checksum, name = match.group(1).lower(), decode_path(match.group(2))
        if payload:
            if not name.startswith("data/"):
                raise BagError(f"{path.name} line {number}: {name!r} is not below data/")
            name = name[len("data/"):]
        try:
            safe_relpath(name)
        except ValueError as exc:
            raise BagError(f"{path.name} line {number}: unsafe path: {exc}") from None
        if name in entries:
            raise BagError(f"{path.name} lists {name!r} twice")
        entries[name] = checksum
    return entries


def _manifests(bag: Path, prefix: str) -> Dict[str, Path]:
    """algorithm -> manifest file, for 'manifest-' or 'tagmanifest-'."""
    found = {}
    for entry in bag.iterdir():
        if entry.name.startswith(prefix) and entry.name.endswith(".txt") and entry.is_file():
            found[entry.name[len(prefix):-len(".txt")]] = entry
    return found


def is_complete_bag(path) -> bool:
    """Finished bag structure (not hashes): bagit.txt and a payload manifest, and not a
    .partial (or being-evicted) directory."""
    path = Path(path)
    if is_transient(path.name) or not (path / "bagit.txt").is_file():
        return False
    return bool(_manifests(path, "manifest-"))


@dataclass
class BagContents:
    path: Path
    info: Dict[str, List[str]] = field(default_factory=dict)
    manifest: Dict[str, str] = field(default_factory=dict)  # "Pixels/Dir-001/1" -> hex
    algorithm: str = MANIFEST_ALGORITHM
    version: str = BAGIT_VERSION

    def first(self, label: str, default: str = "") -> str:
        values = self.info.get(label)
        return values[0] if values else default


def _read_tag_files(path: Path):
    """(version, bag-info, payload manifests {algorithm: file}, preferred algorithm) of a
    bag, the payload manifest not parsed. Raises BagError."""
    if is_transient(path.name):
        raise BagError(f"{path} is unfinished work, not a bag")
    bagit = parse_tags(_read_text(path / "bagit.txt"), "bagit.txt")
    version = (bagit.get("BagIt-Version") or [""])[0]
    encoding = (bagit.get("Tag-File-Character-Encoding") or [""])[0]
    if not version:
        raise BagError(f"{path}/bagit.txt has no BagIt-Version")
    if encoding.upper().replace("_", "-") not in ("UTF-8", "UTF8"):
        raise BagError(f"{path}/bagit.txt: tag files in {encoding!r} are not supported, "
                       "only UTF-8")
    info = {}
    if (path / "bag-info.txt").is_file():
        info = parse_tags(_read_text(path / "bag-info.txt"), "bag-info.txt")
    manifests = _manifests(path, "manifest-")
    if not manifests:
        raise BagError(f"{path} has no payload manifest (manifest-<algorithm>.txt)")
    algorithm = next((a for a in _ALGORITHM_PREFERENCE if a in manifests), sorted(manifests)[0])
    return version, info, manifests, algorithm


def read_bag(path) -> BagContents:
    """Parse a bag's tag files and preferred payload manifest. Raises BagError."""
    path = Path(path)
    version, info, manifests, algorithm = _read_tag_files(path)
    manifest = parse_manifest(manifests[algorithm], payload=True)
    return BagContents(path, info, manifest, algorithm, version)


def payload_files(data_dir: Path) -> Tuple[Dict[str, int], List[str]]:
    """Regular files below data/ -> size, and problems (links, devices: a bag holds
    only regular files, so it stays whole when copied anywhere)."""
    files, problems = {}, []
    stack = [("", os.fspath(data_dir))]
    while stack:
        prefix, directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_symlink():
                    problems.append(f"data/{encode_path(rel)} is a symbolic link")
                elif entry.is_dir():
                    stack.append((rel + "/", entry.path))
                elif entry.is_file():
                    files[rel] = entry.stat().st_size
                else:
                    problems.append(f"data/{encode_path(rel)} is not a regular file")
    return files, problems


def _count_payload(data_dir: Path) -> Tuple[int, List[str]]:
    """payload_files() without the names: how many regular files, and the problems."""
    count, problems = 0, []
    stack = [("", os.fspath(data_dir))]
    while stack:
        prefix, directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink():
                    problems.append(f"data/{encode_path(prefix + entry.name)} is a symbolic link")
                elif entry.is_dir():
                    stack.append((prefix + entry.name + "/", entry.path))
                elif entry.is_file():
                    count += 1
                else:
                    problems.append(f"data/{encode_path(prefix + entry.name)} is not a "
                                    "regular file")
    return count, problems


def _hash_file(path: Path, algorithms) -> Dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                return {a: h.hexdigest() for a, h in hashers.items()}
            for h in hashers.values():
                h.update(block)


def _valid_streaming(path: Path, check_hashes: bool) -> bool:
    """True when the bag is certainly valid, checked in memory independent of its size:
    one payload manifest read line by line (sorted by path, as BagWriter writes it, so
    a repeated path is next to its twin), each listed file stat'ed (and hashed), and the
    payload counted, not listed. False on anything else: validate_bag then runs the
    full check, which names every problem (and holds the listing in memory)."""
    try:
        _, info, manifests, algorithm = _read_tag_files(path)
        if len(manifests) != 1 or algorithm not in hashlib.algorithms_available:
            return False
        data, previous, listed, nbytes = path / "data", None, 0, 0
        with open(manifests[algorithm], "rb") as f:
            for raw in f:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line.strip():
                    continue
                match = _LINE.fullmatch(line)
                if not match:
                    return False
                checksum, name = match.group(1).lower(), decode_path(match.group(2))
                if not name.startswith("data/"):
                    return False
                name = name[len("data/"):]
                safe_relpath(name)
                if previous is not None and name <= previous:
                    return False  # out of order, or twice
                previous = name
                st = os.lstat(data / name)
                if not stat.S_ISREG(st.st_mode):
                    return False
                if check_hashes and _hash_file(data / name, [algorithm])[algorithm] != checksum:
                    return False
                listed, nbytes = listed + 1, nbytes + st.st_size
        on_disk, odd = _count_payload(data)
    except (BagError, OSError, ValueError):
        return False
    if odd or on_disk != listed:
        return False
    oxum = (info.get("Payload-Oxum") or [None])[0]
    if oxum is not None and oxum.strip() != f"{nbytes}.{listed}":
        return False
    return True


def validate_bag(path, check_hashes: bool = True) -> List[str]:
    """Problems with a bag, [] when it is valid. Without check_hashes only the payload's
    hashes are skipped (a stat walk); the small tag files are always hashed.
    The payload is checked by a streaming pass first (memory flat in the bag's size);
    only a bag that pass cannot vouch for is listed in memory to name its problems."""
    path = Path(path)
    if is_transient(path.name):
        return [f"{path} is unfinished work, not a bag"]
    if not path.is_dir():
        return [f"{path} is not a directory"]
    if _valid_streaming(path, check_hashes):
        return _check_tagmanifests(path)
    try:
        contents = read_bag(path)
        manifests = {alg: parse_manifest(p, payload=True)
                     for alg, p in _manifests(path, "manifest-").items()}
        tagmanifests = {alg: parse_manifest(p, payload=False)
                        for alg, p in _manifests(path, "tagmanifest-").items()}
    except (BagError, OSError) as exc:
        return [str(exc)]
    problems = [f"{kind}-{a}.txt: unknown algorithm {a!r}"
                for kind, found in (("manifest", manifests), ("tagmanifest", tagmanifests))
                for a in found if a not in hashlib.algorithms_available]
    if problems:
        return problems
    if not (path / "data").is_dir():
        return [f"{path} has no data/ directory"]
    on_disk, odd = payload_files(path / "data")
    problems += odd
    listed = set().union(*manifests.values())
    for rel in sorted(listed - set(on_disk)):
        problems.append(f"data/{encode_path(rel)} is in the manifest but missing")
    for alg, entries in sorted(manifests.items()):
        for rel in sorted(set(on_disk) - set(entries)):
            problems.append(f"data/{encode_path(rel)} is not in manifest-{alg}.txt")
    if check_hashes:
        for rel in sorted(listed & set(on_disk)):
            wanted = {a: e[rel] for a, e in manifests.items() if rel in e}
            try:
                got = _hash_file(path / "data" / rel, wanted)
            except OSError as exc:
                problems.append(f"data/{encode_path(rel)} cannot be read: {exc.strerror}")
                continue
            for alg in sorted(wanted):
                if got[alg] != wanted[alg]:
                    problems.append(f"data/{encode_path(rel)}: {alg} is {got[alg]}, "
                                    f"the manifest says {wanted[alg]}")
    problems += _check_oxum(contents.info, on_disk)
    return problems + _check_tagmanifests(path, tagmanifests)


def _check_tagmanifests(path: Path, tagmanifests=None) -> List[str]:
    """The tag files against each tag manifest (small files: always hashed)."""
    problems = []
    if tagmanifests is None:
        try:
            tagmanifests = {alg: parse_manifest(p, payload=False)
                            for alg, p in _manifests(path, "tagmanifest-").items()}
        except (BagError, OSError) as exc:
            return [str(exc)]
        problems = [f"tagmanifest-{a}.txt: unknown algorithm {a!r}"
                    for a in tagmanifests if a not in hashlib.algorithms_available]
        if problems:
            return problems
    for alg, entries in sorted(tagmanifests.items()):
        for name, expected in sorted(entries.items()):
            target = path / name
            if not target.is_file():
                problems.append(f"{name} is in tagmanifest-{alg}.txt but missing")
            elif _hash_file(target, [alg])[alg] != expected:
                problems.append(f"{name}: {alg} does not match tagmanifest-{alg}.txt")
    return problems


def _check_oxum(info, on_disk) -> List[str]:
    oxum = (info.get("Payload-Oxum") or [None])[0]
    if oxum is None:
        return []
    match = re.fullmatch(r"(\d+)\.(\d+)", oxum.strip())
    if not match:
        return [f"malformed Payload-Oxum {oxum!r}"]
    nbytes, count = int(match.group(1)), int(match.group(2))
    found = (sum(on_disk.values()), len(on_disk))
    if (nbytes, count) != found:
        return [f"Payload-Oxum says {nbytes} bytes in {count} files, "
                f"found {found[0]} bytes in {found[1]} files"]
    return []


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

    def _close_records(self):
        if self._records_file is not None:
            self._records_file.close()
            self._records_file = None

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
