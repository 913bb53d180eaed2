"""The BagIt format (RFC 8493): what a bag looks like on disk, read and parsed here.

The layout, with no dependency, so any BagIt tool can check a copy without this app:

    <bag>/bagit.txt              BagIt-Version: 1.0, Tag-File-Character-Encoding: UTF-8
    <bag>/bag-info.txt           what was archived (OMERO ids, names, owner, group, ...)
    <bag>/manifest-sha1.txt      "<sha1>  data/<path>" for every payload file
    <bag>/tagmanifest-sha1.txt   "<sha1>  <tag file>" for the three files above
    <bag>/data/<path>            the payload, at its path below the OMERO data directory

The helpers the writer (bagwriter.py) and the checker (bagcheck.py) share live here, so
both import this module and neither imports the other; bag.py is the public face that
re-exports all three.
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from .layout import is_transient, safe_relpath

MANIFEST_ALGORITHM = "sha1"
BAGIT_VERSION = "1.0"
# Preference when a bag (written by another tool) has several payload manifests.
_ALGORITHM_PREFERENCE = ("sha1", "sha256", "sha512", "md5")
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
