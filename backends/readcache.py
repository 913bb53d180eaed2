"""What tape and automated locations share: a read cache next to the write area.

A copy is written to write/<copy> (which the tape software or the archiver takes away)
and, once verified, copied to read/<copy>, from which restores read. The cache copy is
made like the bag itself: built in read/<copy>.partial, every payload file checked
against the bag's manifest both as read from write/ and as read back from the cache
disk, then renamed. Purging the cache removes the oldest copies (base.Backend.evict).
"""
import os
from pathlib import Path

from .bag import BagError, is_complete_bag, read_bag, validate_bag
from .base import Backend, CorruptCopy
from .fsutil import copy_file_hashing, fsync_dir, hash_file, makedirs_durable, remove_tree
from .layout import EVICTING_SUFFIX, PARTIAL_SUFFIX


def copy_bag_verified(source: Path, target: Path) -> None:
    """Copy a complete bag to target through target.partial, checking every payload
    file against the source bag's manifest. Raises CorruptCopy (and leaves nothing
    behind) when the source does not match its manifest. Whatever was at target
    (a damaged copy) is replaced only once the new copy is whole."""
    problems = validate_bag(source, check_hashes=False)
    if problems:
        raise CorruptCopy(f"the copy at {source} is damaged: " + "; ".join(problems[:5]))
    contents = read_bag(source)
    algorithm = contents.algorithm
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    if os.path.lexists(partial):
        remove_tree(partial)  # an interrupted copy: never trusted, start again
    makedirs_durable(partial.parent)
    partial.mkdir()
    try:
        directories = {partial}
        # Tag files (validate_bag checked them against the tag manifest), then payload.
        for top, dirs, names in os.walk(source):
            rel_top = Path(top).relative_to(source)
            if top == os.fspath(source):
                dirs[:] = [d for d in dirs if d != "data"]
            for name in dirs:
                (partial / rel_top / name).mkdir()
                directories.add(partial / rel_top / name)
            for name in names:
                copied = partial / rel_top / name
                got = copy_file_hashing(Path(top) / name, copied, algorithm)
                if hash_file(copied, algorithm, drop_cache=True) != got:
                    raise CorruptCopy(f"{copied} reads back differently "
                                      "from what was written: is the cache disk failing?")
        (partial / "data").mkdir()
        for rel, expected in sorted(contents.manifest.items()):
            dst = partial / "data" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            parent = dst.parent
            while parent not in directories:
                directories.add(parent)
                parent = parent.parent
            got = copy_file_hashing(source / "data" / rel, dst, algorithm)
            if got != expected:
                raise CorruptCopy(f"{source / 'data' / rel} does not match the bag's manifest "
                                  f"({algorithm} {got}, manifest {expected}): the copy in "
                                  "write/ is damaged")
            if hash_file(dst, algorithm, drop_cache=True) != expected:
                raise CorruptCopy(f"{dst} reads back differently from what was written: "
                                  "is the cache disk failing?")
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(directory)
    except BaseException:
        remove_tree(partial)
        raise
    doomed = target.with_name(target.name + EVICTING_SUFFIX)
    if os.path.lexists(target):
        if os.path.lexists(doomed):
            remove_tree(doomed)
        os.rename(target, doomed)  # a name nothing reads, so no one sees it half removed
    os.rename(partial, target)
    fsync_dir(target.parent)
    if os.path.lexists(doomed):
        remove_tree(doomed)
        fsync_dir(target.parent)


class ReadCacheBackend(Backend):
    has_read_cache = True

    def publish(self, relpath, order):
        """Copy the verified bag from write/ into the read cache, then _after_publish
        (idempotent: a valid cache copy is kept even once write/ was emptied)."""
        order = self.order_folders(relpath, order)
        self.check_online()
        rel = self._relpath(relpath)
        source, target = self.write_root / rel, self.read_root / rel
        if not self._cache_holds(source, target):
            if not is_complete_bag(source):
                raise CorruptCopy(f"no complete bag at {source} to copy into the read cache")
            copy_bag_verified(source, target)
        self._after_publish(order)

    def _after_publish(self, order) -> None:
        pass

    def _cache_holds(self, source: Path, target: Path) -> bool:
        """True when read/ already holds a valid copy of the bag in write/."""
        if not is_complete_bag(target) or validate_bag(target, check_hashes=True):
            return False
        if not is_complete_bag(source):
            return True  # write/ already emptied by the tape software or archiver
        try:
            return read_bag(target).manifest == read_bag(source).manifest
        except BagError:
            return False

    def restore_source(self, relpath):
        rel = self._relpath(relpath)
        if not self.is_online():
            return None
        return self._usable(self.read_root / rel)

    def request_restore(self, relpath, order):
        """What a restore of a copy not in the cache waits for. The checks common to
        every read cache come first; `_ask_for(order, state)` says what is missing."""
        order = self.order_folders(relpath, order)
        if not self.is_online():
            # Nothing is asked for: a copy restored now would land on the bare mount
            # point's disk.
            return f"mount {self.describe()}: {self.offline_reason()}"
        state = self._cache_state(relpath)
        if state == "ready":
            return f"the copy is ready in the read cache at {order.destination_folder}"
        return self._ask_for(order, state)

    def _ask_for(self, order, state) -> str:
        raise NotImplementedError

    def _cache_state(self, relpath: str) -> str:
        """'ready', 'arriving' (something is there but not whole yet) or 'absent'."""
        path = self.read_root / self._relpath(relpath)
        if self.restore_source(relpath):
            return "ready"
        return "arriving" if os.path.lexists(path) else "absent"
