"""The files of one Project or Screen, from the OMERO database (no disk access here).

What belongs to a collection, as OMERO's own DiskUsage counts it:
  - the filesets of its images: every fileset entry and the import log(s), whole (a
    fileset is all-or-nothing, even when some of its images sit elsewhere);
  - the Pixels/<id> file of each OMERO 4 image (size from its dimensions);
  - OMERO 4 archived originals (pixelsoriginalfilemap);
  - file attachments on the collection, its datasets/plates/wells and its images;
  - thumbnails, listed apart: never archived or purged, browsing must keep working.
Pyramids (Pixels/<id>_pyramid and its .pyr_lock) are not in the database: the stat
step (engine/stat.py) finds them on disk.

Each file names everything else that holds it (shared_with), as membership.py answers:
other collections, and holders outside every collection (an orphaned image, ...).
"""
import itertools
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional

from .collections import format_key
from .membership import IMAGES_OF, attachments_of, holders
from .paths import RepositoryPaths

FILESET_ENTRY = "fileset_entry"
IMPORT_LOG = "import_log"
PIXELS = "pixels"
PYRAMID = "pyramid"
PYRAMID_LOCK = "pyramid_lock"
ORIGINAL = "original"
ATTACHMENT = "attachment"
THUMBNAIL = "thumbnail"


@dataclass(slots=True)  # no per-instance __dict__: scans hold a million of them
class FileRecord:
    path: str
    kind: str
    size: Optional[int]  # as OMERO records it; None where it records none
    hash: Optional[str] = None
    hasher: Optional[str] = None
    originalfile_id: Optional[int] = None
    pixels_id: Optional[int] = None
    fileset_id: Optional[int] = None
    # Everything else that holds the file (membership.py keys): other collections, and
    # holders outside every collection, which block a purge. Figures about sharing
    # between collections take membership.collection_keys() of it.
    shared_with: List[str] = field(default_factory=list)
    # Filled by the stat step.
    exists: Optional[bool] = None
    disk_size: Optional[int] = None
    mtime: Optional[float] = None
    atime: Optional[float] = None
    symlink_target: Optional[str] = None
    # copyfile.identity_of (device, inode, size, mtime ns, ctime ns) and link count of
    # the file itself (lstat; None for a symlink): what purge compares with the file
    # it copied.
    identity: Optional[tuple] = None
    nlink: Optional[int] = None

    def as_dict(self):
        return asdict(self)


@dataclass
class Inventory:
    kind: str
    id: int
    image_ids: List[int]
    files: List[FileRecord]
    thumbnails: List[FileRecord]
    pixels_ids: List[int]
    # Everything else holding each pixels' image: what a pyramid found on disk shares.
    pixels_shared_with: Dict[int, List[str]] = field(default_factory=dict)

    @property
    def key(self):
        return format_key(self.kind, self.id)


# Every originalfile of a collection once, with the kind read() gives it (its first
# source in read()'s order: entry, import log, original, attachment), by id: one query
# whose rows a server-side cursor hands over in slices.
_STREAM_SOURCES = """
  SELECT 0 AS prio, fe.originalfile AS ofid, fe.fileset, NULL::bigint AS pixels
    FROM filesetentry fe JOIN fs ON fs.id = fe.fileset
  UNION ALL
  SELECT 1, jol.child, fjl.parent, NULL FROM filesetjoblink fjl JOIN fs ON fs.id = fjl.parent
    JOIN joboriginalfilelink jol ON jol.parent = fjl.child
  UNION ALL
  SELECT 2, pom.parent, NULL, pom.child FROM pixelsoriginalfilemap pom
    JOIN px ON px.id = pom.child"""
_STREAM_KINDS = (FILESET_ENTRY, IMPORT_LOG, ORIGINAL, ATTACHMENT)
_cursor_numbers = itertools.count()  # server-side cursors need distinct names
CHUNK = 2000  # rows per slice of a streamed read: its memory, whatever the collection

_ORIGINALFILE_COLUMNS = ('o.id, o.path, o.name, o."size", o.hash, ca.value, o.repo')
_ORIGINALFILE_JOIN = "LEFT JOIN checksumalgorithm ca ON ca.id = o.hasher"


class InventoryReader:
    """Reads inventories over one read-only connection to the OMERO database."""

    def __init__(self, conn, paths: RepositoryPaths, include_attachments=True):
        self.conn = conn
        self.paths = paths
        self.include_attachments = include_attachments

    def _rows(self, query, params):
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def _originalfile(self, row, kind, **extra):
        ofid, path, name, size, digest, hasher, repo = row
        # Files with a repository UUID live in the managed repository; the others are
        # OMERO 4 style Files/<id> under the data directory.
        where = self.paths.managed(path, name) if repo else self.paths.files(ofid)
        return FileRecord(where, kind, size, digest or None, hasher if digest else None,
                          originalfile_id=ofid, **extra)

    def read(self, kind, cid):
        cid = int(cid)
        image_ids = self.image_ids(kind, cid)
        images = self._rows(
            "SELECT i.id, i.fileset, p.id, div(p.sizex::numeric * p.sizey * p.sizez * p.sizec"
            " * p.sizet * coalesce(pt.bitsize, 8) + 7, 8)"
            " FROM image i LEFT JOIN pixels p ON p.image = i.id"
            " LEFT JOIN pixelstype pt ON pt.id = p.pixelstype WHERE i.id = ANY(%s)",
            [image_ids])
        filesets = sorted({fs for _, fs, _, _ in images if fs is not None})
        files = {}

        def add(record):
            files.setdefault(record.path, record)

        for row in self._rows(
                f"SELECT fe.fileset, {_ORIGINALFILE_COLUMNS} FROM filesetentry fe"
                f" JOIN originalfile o ON o.id = fe.originalfile {_ORIGINALFILE_JOIN}"
                " WHERE fe.fileset = ANY(%s) ORDER BY fe.fileset, fe.fileset_index",
                [filesets]):
            add(self._originalfile(row[1:], FILESET_ENTRY, fileset_id=row[0]))
        for row in self._rows(
                f"SELECT fjl.parent, {_ORIGINALFILE_COLUMNS} FROM filesetjoblink fjl"
                " JOIN joboriginalfilelink jol ON jol.parent = fjl.child"
                f" JOIN originalfile o ON o.id = jol.child {_ORIGINALFILE_JOIN}"
                " WHERE fjl.parent = ANY(%s)", [filesets]):
            add(self._originalfile(row[1:], IMPORT_LOG, fileset_id=row[0]))
        pixels_ids = sorted(p for _, _, p, _ in images if p is not None)
        for iid, fileset, pid, nbytes in images:
            if fileset is None and pid is not None:  # OMERO 4: planes in Pixels/<id>
                add(FileRecord(self.paths.pixels(pid), PIXELS, int(nbytes), pixels_id=pid))
        for row in self._rows(
                f"SELECT pom.child, {_ORIGINALFILE_COLUMNS} FROM pixelsoriginalfilemap pom"
                f" JOIN originalfile o ON o.id = pom.parent {_ORIGINALFILE_JOIN}"
                " WHERE pom.child = ANY(%s)", [pixels_ids]):
            add(self._originalfile(row[1:], ORIGINAL, pixels_id=row[0]))
        if self.include_attachments:
            ids = [r[0] for r in self._rows(attachments_of(kind), {"cid": cid, "images": image_ids})]
            for row in self._rows(
                    f"SELECT {_ORIGINALFILE_COLUMNS} FROM originalfile o {_ORIGINALFILE_JOIN}"
                    " WHERE o.id = ANY(%s)", [ids]):
                add(self._originalfile(row, ATTACHMENT))
        thumbnails = [
            FileRecord(self.paths.thumbnail(tid), THUMBNAIL, None, pixels_id=pid)
            for tid, pid in self._rows(
                "SELECT id, pixels FROM thumbnail WHERE pixels = ANY(%s) ORDER BY id",
                [pixels_ids])]
        inventory = Inventory(kind, cid, image_ids, sorted(files.values(), key=lambda f: f.path),
                              thumbnails, pixels_ids)
        self._mark_shared(inventory)
        return inventory

    # -- streamed reads (archive): slices of records, never the whole collection --------

    def image_ids(self, kind, cid):
        return sorted(r[0] for r in self._rows(IMAGES_OF[kind], {"cid": int(cid)}))

    def _stream(self, query, params, chunk):
        """Lists of at most `chunk` rows from a server-side cursor. WITH HOLD: the
        catalog connection is in autocommit, where a plain named cursor cannot live."""
        with self.conn.cursor(name=f"sm_stream_{next(_cursor_numbers)}", withhold=True) as cur:
            cur.itersize = chunk
            cur.execute(query, params)
            while True:
                rows = cur.fetchmany(chunk)
                if not rows:
                    return
                yield rows

    def iter_files(self, kind, cid, chunk=CHUNK) -> Iterator[List[FileRecord]]:
        """The collection's files as read() lists them (minus shared_with, thumbnails and
        pyramids: see iter_pixels_ids), in slices of at most `chunk` records, in no
        particular order. Memory is one slice, whatever the collection's size."""
        params = {"cid": int(cid)}
        sources = _STREAM_SOURCES
        if self.include_attachments:
            attachments = attachments_of(kind, "IN (SELECT id FROM img)")
            sources += f' UNION ALL SELECT 3, att."file", NULL, NULL FROM ({attachments}) att'
        query = (f"WITH img AS ({IMAGES_OF[kind]}),"
                 " fs AS (SELECT DISTINCT i.fileset AS id FROM image i JOIN img ON img.id = i.id"
                 "        WHERE i.fileset IS NOT NULL),"
                 " px AS (SELECT p.id FROM pixels p JOIN img ON img.id = p.image),"
                 f" src AS ({sources})"
                 f" SELECT DISTINCT ON (o.id) s.prio, s.fileset, s.pixels, {_ORIGINALFILE_COLUMNS}"
                 f" FROM src s JOIN originalfile o ON o.id = s.ofid {_ORIGINALFILE_JOIN}"
                 " ORDER BY o.id, s.prio, s.fileset")
        for rows in self._stream(query, params, chunk):
            yield [self._originalfile(row[3:], _STREAM_KINDS[row[0]], fileset_id=row[1],
                                      pixels_id=row[2]) for row in rows]
        # OMERO 4 images: their planes in Pixels/<id>, size from the dimensions.
        query = (f"WITH img AS ({IMAGES_OF[kind]})"
                 " SELECT p.id, div(p.sizex::numeric * p.sizey * p.sizez * p.sizec"
                 " * p.sizet * coalesce(pt.bitsize, 8) + 7, 8)"
                 " FROM img JOIN image i ON i.id = img.id JOIN pixels p ON p.image = i.id"
                 " LEFT JOIN pixelstype pt ON pt.id = p.pixelstype WHERE i.fileset IS NULL"
                 " ORDER BY p.id")
        for rows in self._stream(query, params, chunk):
            yield [FileRecord(self.paths.pixels(pid), PIXELS, int(nbytes), pixels_id=pid)
                   for pid, nbytes in rows]

    def iter_pixels_ids(self, kind, cid, chunk=CHUNK) -> Iterator[List[int]]:
        """The collection's pixels ids in slices (where the stat step looks for pyramids)."""
        query = (f"WITH img AS ({IMAGES_OF[kind]})"
                 " SELECT p.id FROM img JOIN pixels p ON p.image = img.id ORDER BY p.id")
        for rows in self._stream(query, {"cid": int(cid)}, chunk):
            yield [r[0] for r in rows]

    def _mark_shared(self, inventory):
        """Name, for each file, everything else that holds it (membership.holders, one
        statement): entries and import logs asked by their fileset, Pixels/ files and
        pyramids by their pixels, the other files by their original file."""
        me = inventory.key
        held = holders(
            self.conn,
            originalfile_ids=[f.originalfile_id for f in inventory.files
                              if f.originalfile_id is not None and f.fileset_id is None],
            pixels_ids=inventory.pixels_ids,
            fileset_ids=sorted({f.fileset_id for f in inventory.files if f.fileset_id is not None}))
        inventory.pixels_shared_with = {
            pid: sorted(held.pixels.get(pid, set()) - {me}) for pid in inventory.pixels_ids}
        for record in inventory.files:
            record.shared_with = sorted(held.of(record) - {me})
