"""Where OMERO keeps each kind of file on disk."""
import os


def numbered(object_id):
    """Relative path OMERO uses for Pixels/<id>, Files/<id> and Thumbnails/<id>.

    Big ids get directory levels so no directory holds more than a thousand entries:
    while the remaining id is over 999 it is divided by 1000 and `Dir-%03d` of the
    remainder is put in front. 999 -> 999, 1000 -> Dir-001/1000,
    1234567 -> Dir-001/Dir-234/1234567.
    """
    parts = [str(object_id)]
    remaining = int(object_id)
    while remaining > 999:
        remaining //= 1000
        parts.insert(0, "Dir-%03d" % (remaining % 1000))
    return "/".join(parts)


class RepositoryPaths:
    """Absolute paths of OMERO's files, from omero.data.dir and omero.managed.dir."""

    def __init__(self, data_dir, managed_dir):
        self.data_dir = os.path.normpath(data_dir)
        self.managed_dir = os.path.normpath(managed_dir)

    def managed(self, path, name):
        # originalfile.path ends with '/' for FS files; join defensively either way.
        return os.path.join(self.managed_dir, path.lstrip("/"), name)

    def pixels(self, pixels_id):
        return os.path.join(self.data_dir, "Pixels", numbered(pixels_id))

    def pyramid(self, pixels_id):
        return self.pixels(pixels_id) + "_pyramid"

    def pyramid_lock(self, pixels_id):
        return self.pixels(pixels_id) + "_pyramid.pyr_lock"

    def files(self, originalfile_id):
        return os.path.join(self.data_dir, "Files", numbered(originalfile_id))

    def thumbnail(self, thumbnail_id):
        return os.path.join(self.data_dir, "Thumbnails", numbered(thumbnail_id))

    def root_of(self, relpath):
        """(OMERO root, path below it) of a relative path as relative() gives it: where
        purge and restore open directories beneath (engine/beneath.py)."""
        head, _, rest = relpath.partition("/")
        if head == "ManagedRepository" and rest:
            return self.managed_dir, rest
        return self.data_dir, relpath

    def relative(self, path):
        """A path relative to the OMERO root it lies under ("ManagedRepository/..." or
        "Pixels/..."): how archive copies name files."""
        if path.startswith(self.managed_dir + os.sep):
            return "ManagedRepository/" + os.path.relpath(path, self.managed_dir)
        if path.startswith(self.data_dir + os.sep):
            return os.path.relpath(path, self.data_dir)
        raise ValueError(f"{path} is outside the OMERO repository")
