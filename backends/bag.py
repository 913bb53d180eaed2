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
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Dict, List, Tuple, Union

from .fsutil import atomic_write_bytes, fsync_dir, fsync_file, makedirs_durable
from .layout import PARTIAL_SUFFIX, is_transient, safe_relpath

MANIFEST_ALGORITHM = "sha1"
BAGIT_VERSION = "1.0"
# Preference when a bag (written by another tool) has several payload manifests.
_ALGORITHM_PREFERENCE = ("sha1", "sha256", "sha512", "md5")
_SHA1_HEX = re.compile(r"[0-9a-f]{40}")
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


def read_bag(path) -> BagContents:
    """Parse a bag's tag files and preferred payload manifest. Raises BagError."""
    path = Path(path)
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


def _hash_file(path: Path, algorithms) -> Dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                return {a: h.hexdigest() for a, h in hashers.items()}
            for h in hashers.values():
                h.update(block)


def validate_bag(path, check_hashes: bool = True) -> List[str]:
    """Problems with a bag, [] when it is valid. Without check_hashes only the payload's
    hashes are skipped (a stat walk); the small tag files are always hashed."""
    path = Path(path)
    if is_transient(path.name):
        return [f"{path} is unfinished work, not a bag"]
    if not path.is_dir():
        return [f"{path} is not a directory"]
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
    and record()s its SHA1 and size; finish() writes the tag files and publishes."""

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

    @classmethod
    def resume(cls, final_dir) -> "BagWriter":
        """Reopen an interrupted bag. Nothing is recorded: the caller re-records what it
        re-verifies (and removes what it does not)."""
        writer = cls.__new__(cls)
        writer._setup(final_dir)
        if writer.final_dir.exists():
            raise BagError(f"bag {writer.final_dir} is finished already")
        if not writer.work_dir.is_dir():
            raise BagError(f"no interrupted bag at {writer.work_dir}")
        (writer.work_dir / "data").mkdir(exist_ok=True)
        return writer

    def _setup(self, final_dir):
        self.final_dir = Path(final_dir)
        if is_transient(self.final_dir.name):
            raise ValueError(f"a bag's name must not end with a work suffix: {final_dir}")
        self.work_dir = self.final_dir.with_name(self.final_dir.name + PARTIAL_SUFFIX)
        self._records: Dict[str, Tuple[str, int]] = {}

    def payload_path(self, relpath: str) -> Path:
        target = self.work_dir / "data" / safe_relpath(relpath, "payload path")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def record(self, relpath: str, sha1_hex: str, size: int) -> None:
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
        self._records[relpath] = (digest, size)

    def recorded(self) -> Dict[str, Tuple[str, int]]:
        return dict(self._records)

    def finish(self, info: Dict[str, Union[str, List[str]]], fsync_payload: bool = True) -> Path:
        """Write the tag files and rename the bag to its final name. Refuses when a
        recorded file is missing or of another size, or a payload file is unrecorded."""
        if "Payload-Oxum" in info:
            raise ValueError("Payload-Oxum is computed by the bag writer, not given")
        data = self.work_dir / "data"
        on_disk, problems = payload_files(data)
        for rel, (_, size) in sorted(self._records.items()):
            if rel not in on_disk:
                problems.append(f"data/{encode_path(rel)} was recorded but is missing")
            elif on_disk[rel] != size:
                problems.append(f"data/{encode_path(rel)} is {on_disk[rel]} bytes, "
                                f"recorded {size}")
        problems += [f"data/{encode_path(rel)} was never recorded (remove it or record it)"
                     for rel in sorted(set(on_disk) - set(self._records))]
        if problems:
            raise BagError(f"cannot finish bag {self.final_dir}: " + "; ".join(problems))
        if self.final_dir.exists():
            raise BagError(f"bag {self.final_dir} exists already")
        self._sync_payload(data, fsync_payload)
        for stray in self.work_dir.glob(".*.tmp"):
            stray.unlink()  # an interrupted finish's temporary tag file
        items = []
        for label, value in info.items():
            items += [(label, v) for v in value] if isinstance(value, list) else [(label, value)]
        labels = {label for label, _ in items}
        if "Bagging-Date" not in labels:
            items.append(("Bagging-Date", date.today().isoformat()))
        if "Bag-Software-Agent" not in labels:
            items.append(("Bag-Software-Agent", _software_agent()))
        total = sum(size for _, size in self._records.values())
        items.append(("Payload-Oxum", f"{total}.{len(self._records)}"))
        tag_files = {
            "bagit.txt": format_tags([("BagIt-Version", BAGIT_VERSION),
                                      ("Tag-File-Character-Encoding", "UTF-8")]),
            "bag-info.txt": format_tags(items),
            f"manifest-{MANIFEST_ALGORITHM}.txt": "".join(
                f"{digest}  data/{encode_path(rel)}\n"
                for rel, (digest, _) in sorted(self._records.items())),
        }
        tagmanifest = []
        for name, text in tag_files.items():
            raw = text.encode("utf-8")
            atomic_write_bytes(self.work_dir / name, raw)
            tagmanifest.append(f"{hashlib.sha1(raw).hexdigest()}  {name}\n")
        atomic_write_bytes(self.work_dir / f"tagmanifest-{MANIFEST_ALGORITHM}.txt",
                           "".join(tagmanifest).encode("utf-8"))
        os.rename(self.work_dir, self.final_dir)
        fsync_dir(self.final_dir.parent)
        return self.final_dir

    def _sync_payload(self, data: Path, fsync_payload: bool) -> None:
        # Files first, then every directory holding them, deepest first, so the renamed
        # bag never names a file or directory that a power cut could still take away.
        directories = []
        for top, _, names in os.walk(data):
            directories.append(top)
            if fsync_payload:
                for name in names:
                    fsync_file(os.path.join(top, name))
        for directory in sorted(directories, key=len, reverse=True):
            fsync_dir(directory)
        fsync_dir(self.work_dir)

