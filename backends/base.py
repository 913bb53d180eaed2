"""What every archive location type shares: configuration, the on-disk layout, the
online check, and finding, listing and evicting bags.

A location is identified on disk by its directory <mount>/<id>/ holding read/ and
write/ (manual chapter 7). A removable disk that is not plugged in leaves an empty
mount point, so a missing <mount>/<id>/ means "not connected", and nothing is ever
written there: it would land on whatever disk holds the mount point.

Another disk mounted there may hold a <mount>/<id>/ too (another installation's
location of the same id, a disk restored from elsewhere): <mount>/<id>/MARKER holds
the location's marker (a random UUID the app's database keeps, LocationConfig.marker)
and a location whose marker file is missing or different is not online (WrongDisk):
nothing is read from it or written to it. A location made before markers existed
(empty marker, LocationConfig.on_marker given) gets one written at its first check
while online, and on_marker(marker) records it.
"""
import dataclasses
import errno
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, List, NamedTuple, Optional

from .bag import BagContents, BagError, is_complete_bag, read_bag, validate_bag
from .fsutil import fsync_dir, makedirs_durable, remove_tree, tree_bytes
from .layout import EVICTING_SUFFIX, Order, is_transient, parse_when, safe_relpath
# Re-exported: the engine names copies and orders through base.
from .layout import bag_relpath, order_description  # noqa: F401

TYPES = ("hdd", "tape", "automated", "symlink", "s3")


class LocationError(Exception):
    """Something about an archive location prevents the operation."""


class BadLocation(LocationError, ValueError):
    """The location's configuration is wrong (mount point, type, sizes, ...)."""


class BadPath(LocationError, ValueError):
    """A copy's path would reach outside the location (absolute, '..', ...)."""


class LocationOffline(LocationError):
    """<mount>/<id>/ (or its read/ or write/) is missing: disk not connected or mounted."""


class WrongDisk(LocationOffline):
    """<mount>/<id>/ is there but its marker is not this location's: another disk."""


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
    # The marker <mount>/<id>/MARKER must hold ("": none yet). on_marker(marker): called
    # when a location without one got its marker at a check (the caller records it);
    # with neither, the marker is not checked (a backend used on its own).
    marker: str = ""
    on_marker: Optional[Callable[[str], None]] = dataclasses.field(
        default=None, compare=False, repr=False)
    # Type s3 only: the bucket's settings (s3.S3Settings fields); mount is then the
    # local staging folder restores download into (<mount>/<id>/read/).
    options: dict = dataclasses.field(default_factory=dict, compare=False)


MARKER = ".omero-storagemanager"


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
    # Who brings a copy back into the read cache: "cache" a person (tape, a cold S3
    # class: the question e-mail asks them), "archiver" software answering an order.
    cache_wait_kind = "cache"
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
        self.marker = config.marker
        self._marked_root = None  # (st_dev, st_ino) of the root whose marker was right

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
        if self.marker:
            found = self.read_marker()
            if found is None:
                found = self.write_marker(self.marker)
            if found != self.marker:
                raise BadLocation(f"{self.root} belongs to another location: its marker "
                                  f"{self.marker_path} holds {found}, not {self.marker}")

    # -- the marker: this location's disk, not another one mounted at the same place --

    @property
    def marker_path(self) -> Path:
        return self.root / MARKER

    def read_marker(self) -> Optional[str]:
        """The marker in <mount>/<id>/ (never through a link), None when there is none."""
        try:
            fd = os.open(self.marker_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return os.read(fd, 4096).decode("ascii", "replace").strip()
        finally:
            os.close(fd)

    def write_marker(self, marker: str) -> str:
        """Write the marker unless one is there (that one wins: returned)."""
        tmp = self.root / f"{MARKER}.{uuid.uuid4()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            try:
                os.write(fd, (marker + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:  # appears whole or not at all, never replacing another marker
                os.link(tmp, self.marker_path, follow_symlinks=False)
            except FileExistsError:
                pass
            except OSError as exc:  # a file system without hard links
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise
                if not os.path.lexists(self.marker_path):
                    os.rename(tmp, self.marker_path)
            fsync_dir(self.root)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return self.read_marker()

    def marker_problem(self, adopt=True) -> Optional[str]:
        """Why the disk at <mount>/<id>/ is not this location's, or None. Call with the
        directories there. A location without a marker yet gets one (on_marker) when
        adopt is true: an engine operation, never a look (is_online: a page's GET
        changes nothing)."""
        if not self.marker and self.config.on_marker is None:
            return None
        try:
            st = os.stat(self.root)
            if (st.st_dev, st.st_ino) == self._marked_root:
                return None  # the same directory as at the last check: not read again
            found = self.read_marker()
        except OSError as exc:
            return f"its marker {self.marker_path} cannot be read: {exc.strerror or exc}"
        if not self.marker:  # made before markers: this disk is taken as it is
            if not adopt:
                return None
            try:
                found = found or self.write_marker(str(uuid.uuid4()))
            except OSError:
                return None  # read-only: it stays unmarked, as before markers
            self.config.on_marker(found)
            self.marker = found
        elif found is None:
            return (f"the disk at {self.root} is not this location's: its marker "
                    f"{self.marker_path} is missing (if it is this location's disk, "
                    f"write {self.marker} into that file)")
        elif found != self.marker:
            return (f"the disk at {self.root} is not this location's: its marker "
                    f"{self.marker_path} holds {found}, not {self.marker} (another disk, "
                    f"or another installation's location {self.config.id}, is mounted "
                    f"at {self.mount})")
        self._marked_root = (st.st_dev, st.st_ino)
        return None

    def is_online(self) -> bool:
        return (all(p.is_dir() for p in (self.root, self.write_root, self.read_root))
                and self.marker_problem(adopt=False) is None)

    def check_online(self) -> None:
        for path in (self.root, self.write_root, self.read_root):
            if not path.is_dir():
                raise LocationOffline(f"{self.describe()} {self.offline_state}: "
                                      f"{path} is missing")
        problem = self.marker_problem()
        if problem:
            raise WrongDisk(f"{self.describe()}: {problem}; nothing was read or written")

    def offline_reason(self) -> str:
        """Why is_online() is False: the directory missing, or the marker's problem."""
        for path in (self.root, self.write_root, self.read_root):
            if not path.is_dir():
                return f"{path} is missing"
        return self.marker_problem(adopt=False) or "it is online"

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
            return f"{self.connect_verb} {self.describe()}: {self.offline_reason()}"
        path = self.write_root / rel
        if self.restore_source(relpath):
            return f"the copy is ready at {path}"
        return (f"{self.describe()} is {self.connect_verb}ed but holds no complete copy at "
                f"{path}: put the copy back there (then rescan) or restore from another "
                "location")

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
