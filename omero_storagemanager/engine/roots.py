"""The OMERO roots a restore writes into are the ones the archive read from.

A repository on a network share that is not mounted leaves its mount point: an empty
directory at the configured path. A restore into it would put the files on the
disk holding the mount point, hidden again once the share is mounted, while the app
believes the collection restored. So each archive records every OMERO root it reads
from (omero.data.dir, omero.managed.dir: catalog/paths.py) in RepositoryRoot: its
device and a marker file the app leaves in it (MARKER, a random UUID, mode 0600). A
restore refuses, before touching anything, a root whose marker file is missing or
different, or whose device differs (check). A root never recorded (archived by an
older version) is not checked.

The roots a restore writes beneath (engine/beneath.py) are the configured ones and
the recorded ones (Targets): a purged file's path lies below the root it was archived
from.
"""
import errno
import os
import uuid

from ..models import PurgedFile, RepositoryRoot
from . import beneath

MARKER = ".omero-storagemanager"
_MAX = 4096  # a marker is a UUID: anything longer is not ours


def default_paths():
    """The repository paths of the configuration, as the jobs and verbs get them."""
    from .. import settings
    from ..catalog.paths import RepositoryPaths

    return RepositoryPaths(settings.data_dir(), settings.managed_dir())


def _roots(paths):
    return list(dict.fromkeys((paths.data_dir, paths.managed_dir)))


def read_marker(root):
    """The marker in root (no link followed at its name), None when there is none."""
    rfd = beneath.open_root(root)
    try:
        try:
            fd = os.open(MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise beneath.OutsideRoot(exc.errno, f"{os.path.join(root, MARKER)} is a "
                                          "symbolic link", os.path.join(root, MARKER))
            raise
        try:
            return os.read(fd, _MAX).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
    finally:
        os.close(rfd)


def write_marker(root):
    """Leave a new marker in root, atomically, unless one is there already (then that
    one wins, even if another process wrote it meanwhile). Returns the marker."""
    marker = str(uuid.uuid4())
    rfd = beneath.open_root(root)
    tmp = f"{MARKER}.{marker}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=rfd)
        try:
            os.write(fd, (marker + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link: the name appears whole or not at all, and never replaces a marker
            os.link(tmp, MARKER, src_dir_fd=rfd, dst_dir_fd=rfd, follow_symlinks=False)
        except FileExistsError:
            pass
        except OSError as exc:  # a file system without hard links
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            try:
                os.stat(MARKER, dir_fd=rfd, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(tmp, MARKER, src_dir_fd=rfd, dst_dir_fd=rfd)
        os.fsync(rfd)
    finally:
        try:
            os.unlink(tmp, dir_fd=rfd)
        except FileNotFoundError:
            pass
        os.close(rfd)
    return read_marker(root)


def _mismatch(record, root):
    """Why root is not the root recorded, or None."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return "it is missing: is the share mounted?"
    try:
        found = read_marker(root)
    except OSError as exc:
        return f"its marker cannot be read: {exc.strerror or exc}"
    if found is None:
        return "marker missing: is the share mounted?"
    if found != record.marker:
        return (f"marker {found} instead of {record.marker}: another repository is "
                "mounted there")
    if st.st_dev != record.device:
        return (f"device {_dev(st.st_dev)} instead of {_dev(record.device)}: is the share "
                "mounted? if it was remounted, an archive records its device again")
    return None


def _dev(device):
    return f"{os.major(device)}:{os.minor(device)}"


def remember(paths, log=None, write=True):
    """At archive time: record each OMERO root of paths with its device and marker
    (writing the marker on first use). A root recorded before must still carry its
    marker: an archive from an unmounted share is refused like a restore into it.
    A root the app may not write into is not recorded (said through log).
    write=False: only that check, nothing written (before the archive's plan has
    found its files there: a bare mount point must never get a marker)."""
    from .archiveplan import ArchiveError

    for root in _roots(paths):
        record = RepositoryRoot.objects.filter(path=root).first()
        if record is not None:
            problem = _mismatch(record, root)
            if problem is None:
                continue
            if problem.startswith("device "):  # the same marker: moved, or remounted
                device = os.stat(root).st_dev
                RepositoryRoot.objects.filter(pk=record.pk).update(device=device)
                if log:
                    log(f"the repository {root} is now on device {_dev(device)} "
                        f"(was {_dev(record.device)}); its marker is the one recorded")
                continue
            raise ArchiveError(f"the repository {root} is not the one archived from "
                               f"({problem}); nothing was archived")
        if not write:
            continue
        try:
            st = os.stat(root)
            marker = read_marker(root) or write_marker(root)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                if log:
                    log(f"the repository {root} cannot carry the marker that lets a "
                        f"restore recognise it ({exc.strerror}): not recorded")
                continue
            raise ArchiveError(f"the repository {root}: {exc.strerror or exc} "
                               f"({exc.filename or root}); nothing was archived") from exc
        RepositoryRoot.objects.update_or_create(
            path=root, defaults={"device": st.st_dev, "marker": marker})


class Targets:
    """The roots a restore writes beneath: the configured ones and those recorded."""

    def __init__(self, paths, recorded=()):
        self.default = paths.data_dir
        roots = set(_roots(paths)) | set(recorded)
        self.roots = sorted(roots, key=len, reverse=True)  # the innermost first

    def split(self, path):
        """(root, path below it) of an absolute path; a path below no root keeps
        its absolute form, which the copy worker refuses ("not below ...")."""
        for root in self.roots:
            if path.startswith(root + "/"):
                return root, path[len(root) + 1:]
        return self.default, path


def check(paths=None, collection=None):
    """Before a restore: refuse (RestoreError, one line) when an OMERO root it would
    write into is not the one archived from. The roots are those of paths (the
    configuration's when None) and, for a collection, the recorded roots its purged
    files lie below. Returns the Targets of the restore."""
    from .restore import RestoreError

    paths = paths or default_paths()
    records = {r.path: r for r in RepositoryRoot.objects.all()}
    todo = [root for root in _roots(paths) if root in records]
    if collection is not None:
        pending = PurgedFile.objects.filter(collection=collection).exclude(
            state=PurgedFile.RESTORED)
        todo += [root for root in records if root not in todo and root not in _roots(paths)
                 and pending.filter(path__startswith=root + "/").exists()]
    for root in todo:
        problem = _mismatch(records[root], root)
        if problem:
            raise RestoreError(f"the repository {root} is not the one archived from "
                               f"({problem}); nothing was restored")
    return Targets(paths, records)
