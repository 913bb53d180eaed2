"""Checking a bag (validate_bag): is it whole, and do its files match its manifests?

Apart from the writer (bagwriter.py) because a check runs on bags this app did not just
write (found at a location, read back from tape, written by another BagIt tool), and it
needs none of the writer's machinery. A bag this app wrote is vouched for by a streaming
pass (memory flat in its size); anything else gets the full check that names every
problem.
"""
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Dict, List

from .bagformat import (_LINE, BagError, _count_payload, _manifests, _read_tag_files,
                        decode_path, encode_path, parse_manifest, payload_files, read_bag)
from .layout import is_transient, safe_relpath


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
