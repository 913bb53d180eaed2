"""File operations that cannot leave their root: directories opened by descriptor.

Purge deletes and restore writes inside OMERO's repository; both read copies inside a
location. A path string is resolved by the kernel at the moment of each call, so a
directory replaced by a symbolic link (by an admin, a tool, or an attacker who owns a
folder) would send a deletion or a write somewhere else. Here a directory below a root
is opened one way only:

  - Linux 5.6+: openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
    RESOLVE_NO_MAGICLINKS: the kernel refuses any symbolic link and any ".." that
    leaves the root, atomically;
  - elsewhere: one component at a time with O_NOFOLLOW | O_DIRECTORY, "." and ".."
    refused by name.

The final name is then used relative to that descriptor (fstatat, unlinkat, renameat,
openat) with follow_symlinks=False, so the file acted on is the one that was checked.
The root itself is the configured path (it may be a symbolic link the admin made: a
mount point reached through a link is normal); everything below it must be real
directories.
"""
import ctypes
import errno
import os
import platform
import stat
from contextlib import contextmanager

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

# linux/openat2.h
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every architecture (added after the unification)


class OutsideRoot(OSError):
    """A path that would lead out of its root, or through a symbolic link."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _load_openat2():
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long

    def openat2(dirfd, path, flags):
        how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS
                       | _RESOLVE_NO_MAGICLINKS)
        fd = syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd),
                     ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                     ctypes.c_size_t(ctypes.sizeof(how)))
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return fd

    # Probe once: an old kernel answers ENOSYS, a seccomp filter EPERM.
    root = os.open("/", O_DIR)
    try:
        os.close(openat2(root, ".", O_DIR))
    except OSError:
        return None
    finally:
        os.close(root)
    return openat2


_openat2 = _load_openat2()
HAVE_OPENAT2 = _openat2 is not None


def split(relpath):
    """The components of a relative path, refusing what could climb out of a root."""
    relpath = os.fspath(relpath)
    if not relpath or relpath.startswith("/") or "\0" in relpath:
        raise OutsideRoot(errno.EINVAL, "not a relative path below the root", relpath)
    parts = [p for p in relpath.split("/") if p and p != "."]
    if any(p == ".." for p in parts):
        raise OutsideRoot(errno.EINVAL, "'..' leads out of the root", relpath)
    return parts


def _refused(root, parts, exc):
    where = os.path.join(os.fspath(root), *parts)
    return OutsideRoot(exc.errno, f"{where}: a symbolic link or a path leaving "
                                  f"{os.fspath(root)} was refused", where)


def _culprit(root_fd, parts):
    """How many components lead to the first one that is not a real directory (the
    one a refusal names); all of them when none is found (changed meanwhile)."""
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            try:
                nxt = os.open(part, O_DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                return i + 1
            os.close(fd)
            fd = nxt
        return len(parts)
    finally:
        os.close(fd)


def open_root(root):
    """A descriptor of the root directory itself (which may be reached through links)."""
    return os.open(os.fspath(root), O_DIR)


def open_dir(root_fd, parts, create=False, mode=0o755, root_name="the root"):
    """A descriptor of root/parts..., every component a real directory (no symbolic
    link anywhere below the root). create=True makes missing directories one by one
    (each fsynced into its parent, so a later file in it survives a power cut)."""
    parts = list(parts)
    if not parts:
        return os.dup(root_fd)
    if _openat2 is not None and not create:
        try:
            return _openat2(root_fd, "/".join(parts), O_DIR)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
                # openat2 does not say which component it refused: the message names it
                raise _refused(root_name, parts[:_culprit(root_fd, parts)], exc) from None
            raise
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            try:
                nxt = os.open(part, O_DIR | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                    os.fsync(fd)
                except FileExistsError:
                    pass  # made meanwhile: opened below like any other
                nxt = os.open(part, O_DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refused(root_name, parts[:i + 1], exc) from None
                raise
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def parent_of(root, relpath, create=False):
    """(directory descriptor, final name) of root/relpath, the directory opened beneath
    root; closed on exit."""
    parts = split(relpath)
    rfd = open_root(root)
    try:
        dfd = open_dir(rfd, parts[:-1], create=create, root_name=root)
    finally:
        os.close(rfd)
    try:
        yield dfd, parts[-1]
    finally:
        os.close(dfd)


def lstat(root, relpath):
    """os.lstat of root/relpath without following any link on the way."""
    with parent_of(root, relpath) as (dfd, name):
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)


def open_file(root, relpath, flags=os.O_RDONLY):
    """A descriptor of the regular file root/relpath (no link on the way, nor at the
    end: O_NOFOLLOW)."""
    with parent_of(root, relpath) as (dfd, name):
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refused(root, split(relpath), exc) from None
            raise


def replace_file(root, relpath, chunks, mode=0o644):
    """Write root/relpath whole, every directory on the way a real one beneath root: the
    bytes of `chunks` go into a new temporary file beside it, made durable, then renamed
    over it (a reader sees the old file or the new one, never a part)."""
    with parent_of(root, relpath) as (dfd, name):
        tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=dfd)
        try:
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            raise
        os.fsync(dfd)


def is_regular(st):
    return stat.S_ISREG(st.st_mode)


class ReadFolders:
    """Directory descriptors of recent folders below roots, for reads only (stats of
    the copies a purge checks, many in few folders): a folder is opened beneath its root
    once, not once per file. At most `limit` stay open (the least recently used is
    closed). Never used to delete or write: a folder moved out of its root after it
    was opened would still be reached through its descriptor."""

    def __init__(self, limit=64):
        self.limit = limit
        self._fds = {}  # (root, folder parts) -> fd, in order of use

    def _dir(self, root, parts):
        key = (root, tuple(parts))
        fd = self._fds.pop(key, None)
        if fd is None:
            rfd = open_root(root)
            try:
                fd = open_dir(rfd, parts, root_name=root)
            finally:
                os.close(rfd)
            while len(self._fds) >= self.limit:
                os.close(self._fds.pop(next(iter(self._fds))))
        self._fds[key] = fd
        return fd

    def lstat(self, root, relpath):
        parts = split(relpath)
        return os.stat(parts[-1], dir_fd=self._dir(root, parts[:-1]), follow_symlinks=False)

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
