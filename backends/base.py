"""What every archive location type shares: configuration, the on-disk layout, the
online check, and finding, listing and evicting bags.

A location is identified on disk by its directory <mount>/<id>/ holding read/ and
write/ (manual chapter 7). A removable disk that is not plugged in leaves an empty
mount point, so a missing <mount>/<id>/ means "not connected", and nothing is ever
written there: it would land on whatever disk holds the mount point.
"""
import dataclasses
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional

from .bag import BagContents, BagError, is_complete_bag, read_bag, validate_bag
from .fsutil import fsync_dir, makedirs_durable, remove_tree, tree_bytes
from .layout import EVICTING_SUFFIX, Order, is_transient, parse_when, safe_relpath
# Re-exported: the engine names copies and orders through base.
from .layout import bag_relpath, order_description  # noqa: F401

TYPES = ("hdd", "tape", "automated", "symlink")


class LocationError(Exception):
    """Something about an archive location prevents the operation."""


class BadLocation(LocationError, ValueError):
    """The location's configuration is wrong (mount point, type, sizes, ...)."""


class BadPath(LocationError, ValueError):
    """A copy's path would reach outside the location (absolute, '..', ...)."""


class LocationOffline(LocationError):
    """<mount>/<id>/ (or its read/ or write/) is missing: disk not connected or mounted."""


class CorruptCopy(LocationError):
    """A copy does not match its manifest, so it must not be copied or relied on."""


@dataclass(frozen=True)
class LocationConfig:
    id: int
    name: str
    type: str
    mount: str
    max_bytes: int
    purge_watermark: int = 80  # percent of max_bytes
    purge_enabled: bool = False
    xml_folder: str = ""  # automated only: where the archiver's XML orders go


class CachedBag(NamedTuple):
    relpath: str
    created: datetime
    bytes: int


class FoundBag(NamedTuple):
    area: str  # "write" or "read"
    relpath: str
    contents: BagContents  # empty info and manifest when the bag could not be read
    error: str = ""  # why the bag could not be read, "" when it was


def check_path_syntax(path: str, what: str = "mount point") -> str:
    """The checks that need no disk: a non-empty absolute path without '..' or control
    characters. Returns it normalised (no trailing or doubled slashes)."""
    if not isinstance(path, str) or not path.strip():
        raise BadLocation(f"{what} must be an absolute path, not {path!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise BadLocation(f"{what} {path!r} contains control characters")
    if not path.startswith("/"):
        raise BadLocation(f"{what} {path!r} is a relative path: give an absolute path")
    if ".." in path.split("/"):
        raise BadLocation(f"{what} {path!r} contains '..': give the path without it")
    return os.path.normpath(path)


def validate_mount(mount: str, what: str = "mount point") -> str:
    """The normalised absolute mount point, or BadLocation saying what is wrong."""
    path = check_path_syntax(mount, what)
    if not os.path.lexists(path):
        raise BadLocation(f"{what} {path} does not exist")
    if not os.path.isdir(path):
        raise BadLocation(f"{what} {path} is not a directory (or a link to a missing one)")
    if os.path.realpath(path) == "/":
        how = " through a symbolic link" if path != "/" else ""
        raise BadLocation(f"{what} {path} is the root directory{how}: archives must go to "
                          "a disk of their own")
    return path


def check_config(config: LocationConfig) -> None:
    def bad_int(value):
        return isinstance(value, bool) or not isinstance(value, int)

    if bad_int(config.id) or config.id <= 0:
        raise BadLocation(f"location id must be a positive integer, not {config.id!r}")
    if not isinstance(config.name, str) or not config.name.strip():
        raise BadLocation(f"location {config.id} needs a name")
    if config.type not in TYPES:
        raise BadLocation(f"unknown location type {config.type!r} for location "
                          f"{config.name!r}: use one of {', '.join(TYPES)}")
    check_path_syntax(config.mount)
    if bad_int(config.max_bytes) or config.max_bytes < 0:
        raise BadLocation(f"maximum size must be a number of bytes >= 0, not "
                          f"{config.max_bytes!r}")
    if bad_int(config.purge_watermark) or not 0 <= config.purge_watermark <= 100:
        raise BadLocation(f"purge watermark must be a percentage 0-100, not "
                          f"{config.purge_watermark!r}")


class Backend:
    """One archive location. Subclasses: one per type (hdd, tape, automated, symlink)."""

    type = ""
    has_read_cache = False
    noun = "archive location"  # how messages name it: "archive disk 'Disk 3' (id 3)"
    offline_state = "is not mounted"
    connect_verb = "mount"

    def __init__(self, config: LocationConfig):
        check_config(config)
        if config.type != self.type:
            raise BadLocation(f"location {config.name!r} is of type {config.type!r}, "
                              f"not {self.type!r}")
        self.config = config
        self.mount = Path(check_path_syntax(config.mount))

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()} at {self.root}>"

    def describe(self) -> str:
        return f"{self.noun} {self.config.name!r} (id {self.config.id})"

    @property
    def root(self) -> Path:
        return self.mount / str(self.config.id)

    @property
    def write_root(self) -> Path:
        return self.root / "write"

    @property
    def read_root(self) -> Path:
        return self.root / "read"

    # -- setting up and checking -------------------------------------------------------

    def initialize(self) -> None:
        """Create <mount>/<id>/read and write (idempotent). The mount point must exist."""
        validate_mount(self.config.mount)
        for path in (self.root, self.write_root, self.read_root):
            if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
                raise BadLocation(f"{path} exists and is not a directory")
            makedirs_durable(path)

    def is_online(self) -> bool:
        return all(p.is_dir() for p in (self.root, self.write_root, self.read_root))

    def check_online(self) -> None:
        for path in (self.root, self.write_root, self.read_root):
            if not path.is_dir():
                raise LocationOffline(f"{self.describe()} {self.offline_state}: "
                                      f"{path} is missing")

    def disk_usage(self) -> int:
        """Bytes of the files below <mount>/<id>/ (write and read)."""
        self.check_online()
        return tree_bytes(self.root)

    def _relpath(self, relpath: str) -> Path:
        try:
            rel = safe_relpath(relpath, "copy path")
        except ValueError as exc:
            raise BadPath(str(exc)) from None
        if is_transient(rel.name):
            raise BadPath(f"copy path {relpath!r} names work in progress, not a copy")
        return Path(rel)

    def bag_dir(self, relpath: str) -> Path:
        """Where the bag for `relpath` is written: write/<relpath>."""
        rel = self._relpath(relpath)
        self.check_online()
        return self.write_root / rel

    def order_folders(self, relpath: str, order: Order) -> Order:
        """The order with this location's folders filled in; refuses an order that is
        not for `relpath` (the engine would be publishing or fetching the wrong copy)."""
        rel = self._relpath(relpath)
        if order.relpath != relpath:
            raise BadPath(f"order {order.description} is not for copy {relpath!r}")
        return dataclasses.replace(order, source_folder=str(self.write_root / rel),
                                   destination_folder=str(self.read_root / rel))

    # -- the copy's life ---------------------------------------------------------------

    def publish(self, relpath: str, order: Order) -> None:
        """Called once the bag in write/ is complete and verified."""
        self.order_folders(relpath, order)
        self.check_online()
        if not is_complete_bag(self.write_root / self._relpath(relpath)):
            raise CorruptCopy(f"no complete bag at {self.write_root / relpath}")

    def _usable(self, path: Path) -> Optional[Path]:
        """The bag at path when it is whole (structure, sizes, tag files), else None.
        Hashes are the restore's job: it verifies every file it copies back."""
        if is_complete_bag(path) and not validate_bag(path, check_hashes=False):
            return path
        return None

    def restore_source(self, relpath: str) -> Optional[Path]:
        """The complete bag to restore from, or None when it cannot be reached now."""
        rel = self._relpath(relpath)
        if not self.is_online():
            return None
        return self._usable(self.write_root / rel)

    def request_restore(self, relpath: str, order: Order) -> str:
        """What has to happen before restore_source() finds the copy."""
        rel = self._relpath(relpath)
        self.order_folders(relpath, order)
        if not self.is_online():
            return f"{self.connect_verb} {self.describe()}: {self._missing()} is missing"
        path = self.write_root / rel
        if self.restore_source(relpath):
            return f"the copy is ready at {path}"
        return (f"{self.describe()} is {self.connect_verb}ed but holds no complete copy at "
                f"{path}: put the copy back there (then rescan) or restore from another "
                "location")

    def _missing(self) -> Path:
        return next(p for p in (self.root, self.write_root, self.read_root)
                    if not p.is_dir())

    # -- maintenance -------------------------------------------------------------------

    def cache_bags(self) -> List[CachedBag]:
        """Bags in the read cache, oldest archived first (for purging to the watermark)."""
        if not self.has_read_cache:
            return []
        self.check_online()
        bags = []
        for relpath, path in walk_bags(self.read_root):
            bags.append(CachedBag(relpath, _created(path), tree_bytes(path)))
        return sorted(bags, key=lambda b: (b.created, b.relpath))

    def evict(self, relpath: str) -> None:
        """Remove a bag from the read cache (never from write/). Idempotent."""
        rel = self._relpath(relpath)
        if not self.has_read_cache:
            raise LocationError(f"{self.describe()} has no read cache to evict from")
        self.check_online()
        target = self.read_root / rel
        doomed = target.with_name(target.name + EVICTING_SUFFIX)
        if os.path.lexists(target):
            if not is_complete_bag(target):
                raise LocationError(f"{target} is not a complete bag (a restore into the "
                                    "cache may be under way): not evicting it")
            # Renamed first, so no one ever sees a half-removed bag under its name.
            os.rename(target, doomed)
            fsync_dir(doomed.parent)
        if os.path.lexists(doomed):
            remove_tree(doomed)
            fsync_dir(doomed.parent)
        self._after_evict(relpath)

    def _after_evict(self, relpath: str) -> None:
        pass

    def find_bags(self) -> Iterator[FoundBag]:
        """Every complete bag under write/ and read/, with its bag-info and manifest
        (rescan: rebuild the catalogue of copies from what is on the disk)."""
        self.check_online()
        for area, top in (("write", self.write_root), ("read", self.read_root)):
            for relpath, path in walk_bags(top):
                try:
                    yield FoundBag(area, relpath, read_bag(path))
                except (BagError, OSError) as exc:
                    yield FoundBag(area, relpath, BagContents(path, algorithm=""), str(exc))


def walk_bags(top: Path) -> Iterator[tuple]:
    """(relpath, path) of each complete bag below top, in path order; never descends
    into a bag (its payload can hold a million files) or into work in progress."""

    def visit(prefix, directory):
        try:
            with os.scandir(directory) as it:
                entries = sorted((e for e in it if e.is_dir(follow_symlinks=False)),
                                 key=lambda e: e.name)
        except FileNotFoundError:
            return  # removed while we walked (an eviction)
        for entry in entries:
            if is_transient(entry.name):
                continue
            path = Path(entry.path)
            if (path / "bagit.txt").exists():
                if is_complete_bag(path):
                    yield prefix + entry.name, path
            else:
                yield from visit(prefix + entry.name + "/", entry.path)

    yield from visit("", os.fspath(top))


def _created(path: Path) -> datetime:
    """When a copy was archived: its directory name (the manual's datetime), else its
    Bagging-Date, else its modification time."""
    try:
        return parse_when(path.name)
    except ValueError:
        pass
    try:
        return datetime.strptime(read_bag(path).first("Bagging-Date"), "%Y-%m-%d")
    except (BagError, OSError, ValueError):
        return datetime.fromtimestamp(path.stat().st_mtime)
