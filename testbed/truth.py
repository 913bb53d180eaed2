"""What a generated facility really holds: the oracle the app's scans are checked against.

The generator builds the Truth from its own construction, never by reading back the
database it wrote. Everything is JSON-serialisable:

    truth.save("truth.json"); truth = Truth.load("truth.json")

Layout (ids are ints in Python, strings as JSON keys):

  seed, root, data_dir (omero.data.dir), managed_dir (omero.managed.dir), inplace_dir
  managed_repo_uuid        originalfile.repo of the ManagedRepository files
  users   {id: {omename, firstname, lastname, email, groups: [ids], owner_of: [ids],
                admin: bool}}
  groups  {id: {name, permissions}}            (the built-in system/user/guest included)
  collections {"Project:<id>" | "Screen:<id>": {
      kind: "project" | "screen", id, name, owner_id, group_id, created (ISO, UTC),
      image_ids (sorted, unique), dataset_ids | plate_ids, fileset_ids,
      foreign_image_ids: images outside the collection that share one of its filesets
                         (a fileset is all-or-nothing),
      files: [{path (absolute), kind, size, hash, hasher ("SHA1-160", "MD5-128" or None),
               originalfile_id (None for Pixels/ files), fileset_id, pixels_id,
               shared_with: other collection keys that hold the same file, sorted,
               symlink_target (absolute, or None), missing (bool),
               db_size (only when the database records another size than the disk),
               mtime, atime (epoch seconds set on disk)}],
      thumbnails: [{path, size, thumbnail_id, pixels_id}]}}
  anomalies  [{kind: "missing" | "size_mismatch", path, collections, ...}]
  counts     rows per table the generator wrote

File kinds: "fileset_entry", "import_log", "pixels", "pyramid", "pyramid_lock",
"original" (OMERO 4 Files/<id> via pixelsoriginalfilemap), "attachment" (FileAnnotation).
`size`/`hash` describe the file on disk; for a missing file they are the database's.
A symlink's size and hash are its target's (OMERO records the target's).
"""
import copy
import json
from pathlib import Path


class Truth:
    def __init__(self, data):
        self.data = data

    # -- plain attributes ------------------------------------------------------------
    def __getattr__(self, name):
        try:
            return self.__dict__["data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self):
        return copy.deepcopy(self.data)

    def __eq__(self, other):
        return isinstance(other, Truth) and self.to_json() == other.to_json()

    # -- persistence -----------------------------------------------------------------
    def to_json(self):
        return json.dumps(self.data, sort_keys=True, ensure_ascii=False, indent=1)

    def save(self, path):
        Path(path).write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path):
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for key in ("users", "groups"):
            data[key] = {int(k): v for k, v in data[key].items()}
        return cls(data)

    def normalized(self):
        """The truth with the facility's root replaced by '<root>' (compares two runs)."""
        root = self.data["root"]
        text = json.dumps(self.data, sort_keys=True, ensure_ascii=False)
        return json.loads(text.replace(json.dumps(root)[1:-1], "<root>"))

    # -- queries ---------------------------------------------------------------------
    def collection(self, kind, cid):
        return self.data["collections"][f"{kind.capitalize()}:{cid}"]

    def all_files(self):
        """Every file of every collection, once (by path)."""
        seen = {}
        for col in self.data["collections"].values():
            for f in col["files"]:
                seen.setdefault(f["path"], f)
        return [seen[p] for p in sorted(seen)]

    def collection_totals(self):
        """{key: {files, bytes, repo_bytes, thumbnails, thumbnail_bytes}} per collection.

        bytes counts every file's size (symlink targets included, missing files at their
        recorded size); repo_bytes only what lies inside the OMERO repository: no
        in-place targets, no missing files.
        """
        totals = {}
        for key, col in self.data["collections"].items():
            totals[key] = {
                "files": len(col["files"]),
                "bytes": sum(f["size"] for f in col["files"]),
                "repo_bytes": sum(f["size"] for f in col["files"]
                                  if not f["missing"] and not f["symlink_target"]),
                "thumbnails": len(col["thumbnails"]),
                "thumbnail_bytes": sum(t["size"] for t in col["thumbnails"]),
            }
        return totals

    def union_bytes(self, keys, thumbnails=False):
        """Bytes of the files of several collections, a shared file counted once."""
        sizes = {}
        for key in keys:
            col = self.data["collections"][key]
            for f in col["files"]:
                sizes[f["path"]] = f["size"]
            if thumbnails:
                for t in col["thumbnails"]:
                    sizes[t["path"]] = t["size"]
        return sum(sizes.values())

    def union_files(self, keys):
        paths = set()
        for key in keys:
            paths.update(f["path"] for f in self.data["collections"][key]["files"])
        return sorted(paths)
