"""Online (symlink) locations: an always-mounted archive that OMERO reads through links.

Copies are written to write/ like on an HDD. When a collection is purged, each
primary file is replaced by a symbolic link to its copy in the bag (the reverse of an
in-place import), so OMERO keeps serving the data from the archive. The bag is then
in use by OMERO: it has no read cache and is never evicted.
"""
from pathlib import Path

from .bag import read_bag
from .base import Backend, BadPath, CorruptCopy, LocationError
from .layout import safe_relpath


class SymlinkBackend(Backend):
    type = "symlink"
    noun = "online archive"

    def link_target(self, relpath: str, file_relpath: str) -> Path:
        """The absolute path a purged primary file's link should point to: the file in
        the complete bag at write/<relpath>, which the bag's manifest must list."""
        try:
            rel = safe_relpath(file_relpath, "file path")
        except ValueError as exc:
            raise BadPath(str(exc)) from None
        self.check_online()
        bag = self.restore_source(relpath)
        if bag is None:
            raise CorruptCopy(f"no complete bag at {self.write_root / relpath} "
                              f"on {self.describe()}")
        if str(rel) not in read_bag(bag).manifest:
            raise LocationError(f"{file_relpath!r} is not in the copy {relpath}")
        target = bag / "data" / rel
        if target.is_symlink() or not target.is_file():
            raise CorruptCopy(f"{target} is listed in the manifest but is not a file")
        return target
