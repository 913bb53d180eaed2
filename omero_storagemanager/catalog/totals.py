"""Figures of every Project and Screen at once, aggregated in the OMERO database.

The per-collection inventory (inventory.py) lists files one by one; scanning ten
thousand collections that way would take ten thousand round trips. Here everything is
summed in three set-based statements: the figures of every fileset (FILESET_FIGURES),
each collection's filesets and the rest of its figures (COLLECTION_PARTS), and its
attachments (ATTACHMENTS); a shared fileset is found by counting the collections that
hold it. The first two are independent, so a scan runs them at once on two
connections, and the filesets' figures are added up per collection here.
The figures agree with the inventory's (tests/test_scan.py holds them to it), except
pyramids, which are not in the database and are counted by the stat and verify modes.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from .collections import as_utc
# Who holds what (each collection's images, with their filesets; its attachments) is
# membership.py's: the statements below only add figures up.
from .membership import ATTACHMENT_LINKS, COLLECTION_IMAGE_FILESETS, COLLECTION_IMAGES

# The figures of every fileset: its files, entries and import logs alike, summed in ONE
# pass over originalfile (a UNION ALL of the two link paths; the same file reached by
# both paths counts twice, as it would summed apart). This is half of the catalogue's
# work, and it needs nothing of the collections: it runs on its own connection while
# COLLECTION_PARTS runs on another (collection_figures puts the two together).
FILESET_FIGURES = """
WITH fs_files AS (SELECT fileset, originalfile AS file FROM filesetentry
                  UNION ALL
                  SELECT fjl.parent, jol.child FROM filesetjoblink fjl
                    JOIN joboriginalfilelink jol ON jol.parent = fjl.child)
SELECT x.fileset, count(*), sum(o."size")::bigint, max(o.mtime),
       count(*) FILTER (WHERE o.hash IS NULL)
  FROM fs_files x JOIN originalfile o ON o.id = x.file GROUP BY x.fileset
"""

# Everything else, one row per collection: its images, what they add beside their
# filesets, its thumbnails, and its filesets (an array; those held by another
# collection too, which makes their bytes shared, in a second one). Sums are cast to
# bigint: sums of bigints are numeric, which psycopg2 turns into slow Decimals. The
# collections' images are computed once (MATERIALIZED). What an image adds beside its
# fileset (the Pixels/ file of an OMERO 4 image, sized from its dimensions; OMERO 4
# archived originals) is gathered only for the images that have any, so the hundreds of
# thousands of OMERO 5 images cost nothing but their count; thumbnails are counted
# apart for the same reason.
# The end of COLLECTION_PARTS and scoped.SCOPED_PARTS: each collection's figures from
# held_extra (its images' extra files, with n holders), thumbs and fs_of, given
# cimg, images and cf.
PARTS_TAIL = """img_figures AS (
    SELECT kind, cid, sum(files) AS files, coalesce(sum(bytes), 0) AS bytes,
           sum(unhashed) AS unhashed, coalesce(sum(bytes) FILTER (WHERE n > 1), 0) AS shared,
           max(newest) AS newest
      FROM held_extra GROUP BY kind, cid),
thumbs AS (
    SELECT c.kind, c.cid, count(*) AS n
      FROM thumbnail t JOIN pixels p ON p.id = t.pixels JOIN cimg c ON c.image = p.image
     GROUP BY c.kind, c.cid),
fs_of AS (
    SELECT cf.kind, cf.cid, array_agg(cf.fileset) AS filesets,
           array_agg(cf.fileset) FILTER (WHERE h.n > 1) AS shared
      FROM cf JOIN holders h ON h.fileset = cf.fileset GROUP BY cf.kind, cf.cid)
SELECT m.kind, m.cid, m.images, coalesce(x.files, 0)::bigint,
       coalesce(x.bytes, 0)::bigint, coalesce(x.unhashed, 0)::bigint,
       coalesce(x.shared, 0)::bigint, x.newest, coalesce(t.n, 0), fs.filesets, fs.shared
  FROM images m
  LEFT JOIN fs_of fs ON fs.kind = m.kind AND fs.cid = m.cid
  LEFT JOIN img_figures x ON x.kind = m.kind AND x.cid = m.cid
  LEFT JOIN thumbs t ON t.kind = m.kind AND t.cid = m.cid
"""

COLLECTION_PARTS = f"""WITH cimg AS MATERIALIZED ({COLLECTION_IMAGE_FILESETS}),
cf AS MATERIALIZED (SELECT DISTINCT kind, cid, fileset FROM cimg WHERE fileset IS NOT NULL),
holders AS (SELECT fileset, count(*) AS n FROM cf GROUP BY fileset),
images AS (SELECT kind, cid, count(*) AS images FROM cimg GROUP BY kind, cid),
extra AS (
    SELECT image, sum(files) AS files, sum(bytes) AS bytes, max(newest) AS newest,
           sum(unhashed) AS unhashed
      FROM (SELECT p.image, 1 AS files,
                   div(p.sizex::numeric * p.sizey * p.sizez * p.sizec * p.sizet
                       * coalesce(pt.bitsize, 8) + 7, 8) AS bytes,
                   NULL::timestamp AS newest, 1 AS unhashed
              FROM image i JOIN pixels p ON p.image = i.id
              LEFT JOIN pixelstype pt ON pt.id = p.pixelstype
             WHERE i.fileset IS NULL
            UNION ALL
            SELECT p.image, 1, o."size", o.mtime, CASE WHEN o.hash IS NULL THEN 1 ELSE 0 END
              FROM pixelsoriginalfilemap pom JOIN pixels p ON p.id = pom.child
              JOIN originalfile o ON o.id = pom.parent) x
     GROUP BY image),
-- n: how many collections hold the image (a window over its rows: only images with
-- extra files get here).
held_extra AS (SELECT c.kind, c.cid, x.*, count(*) OVER (PARTITION BY x.image) AS n
                 FROM extra x JOIN cimg c ON c.image = x.image),
{PARTS_TAIL}"""


ATTACHMENTS = f"""
WITH ci AS ({COLLECTION_IMAGES}),
att AS ({ATTACHMENT_LINKS}),
holders AS (SELECT file, count(*) AS n FROM att GROUP BY file)
SELECT att.kind, att.cid, count(*), sum(o."size"), max(o.mtime),
       count(*) FILTER (WHERE o.hash IS NULL),
       coalesce(sum(o."size") FILTER (WHERE h.n > 1), 0)
  FROM att JOIN originalfile o ON o.id = att.file JOIN holders h ON h.file = att.file
 GROUP BY att.kind, att.cid
"""


@dataclass
class Figures:
    """What a scan knows of one collection. None: not measured in this mode."""

    files: int = 0
    bytes: int = 0
    images: int = 0
    shared_bytes: int = 0
    shared_filesets: int = 0
    unhashed_files: int = 0
    thumbnails: int = 0
    newest_file: Optional[datetime] = None
    # Known only from the disk (stat and verify modes):
    thumbnail_bytes: Optional[int] = None
    last_access: Optional[datetime] = None
    missing_files: Optional[int] = None
    size_mismatches: Optional[int] = None
    symlinks: Optional[int] = None
    pyramids: Optional[int] = None
    # Known only from hashing (verify mode):
    checksum_mismatches: Optional[int] = None
    extra: dict = field(default_factory=dict)


def _newest(a, b):
    return b if a is None or (b is not None and b > a) else a


def fileset_figures(conn):
    """{fileset id: (files, bytes, newest file time, files with no hash)}."""
    with conn.cursor() as cur:
        cur.execute(FILESET_FIGURES)
        return {row[0]: row[1:] for row in cur}


def collection_figures(conn, include_attachments=True, per_fileset=None):
    """{(kind, id): Figures} for every Project and Screen that holds anything.

    per_fileset: a callable that returns fileset_figures(), such as the result of a
    query running on another connection meanwhile; without it they are read on `conn`
    after the collections' parts.
    """
    with conn.cursor() as cur:
        cur.execute(COLLECTION_PARTS)
        parts = cur.fetchall()
        attachments = None
        if include_attachments:
            cur.execute(ATTACHMENTS)
            attachments = cur.fetchall()
    per_fileset = per_fileset() if per_fileset is not None else fileset_figures(conn)
    return assemble(parts, attachments, per_fileset)


def assemble(parts, attachments, per_fileset):
    """{(kind, id): Figures} from COLLECTION_PARTS' and ATTACHMENTS' rows and the figures
    of their filesets (also what scoped.figures_of adds up: one way to add, for both)."""
    figures = defaultdict(Figures)
    for (kind, cid, images, files, nbytes, unhashed, shared, newest, thumbs, filesets,
         shared_filesets) in parts:
        f = figures[(kind, cid)]
        f.images, f.thumbnails = images, thumbs
        newest = as_utc(newest)
        # A column at a time over the collection's filesets (a loop per fileset took a
        # fifth of a second for a hundred thousand); a fileset with no files has no row.
        found = [x for x in map(per_fileset.get, filesets or ()) if x is not None]
        if found:
            fs_files, fs_bytes, fs_newest, fs_unhashed = zip(*found)
            files += sum(fs_files)
            nbytes += sum(fs_bytes)
            unhashed += sum(fs_unhashed)
            newest = _newest(newest, as_utc(max(filter(None, fs_newest), default=None)))
        if shared_filesets:
            f.shared_filesets = len(shared_filesets)
            shared += sum(x[1] for x in map(per_fileset.get, shared_filesets) if x is not None)
        _add(f, files, nbytes, newest, unhashed, shared)
    if attachments is not None:
        for kind, cid, files, nbytes, newest, unhashed, shared in attachments:
            _add(figures[(kind, cid)], int(files), int(nbytes or 0), as_utc(newest),
                 int(unhashed), int(shared))
    return dict(figures)


def _add(f, files, nbytes, newest, unhashed, shared):
    """Add one part's figures (a collection's own, or its attachments') to a Figures."""
    f.files += files
    f.bytes += nbytes
    f.newest_file = _newest(f.newest_file, newest)
    f.unhashed_files += unhashed
    f.shared_bytes += shared


# Bytes per owner or per group of the collections, each file counted once however many
# of that owner's (or group's) collections hold it. {who} is owner_id or group_id.
UNION_BY = f"""
WITH ci AS ({COLLECTION_IMAGES}),
keep AS (SELECT 'project'::text AS kind, id, {{who}} AS who FROM project
         UNION ALL SELECT 'screen', id, {{who}} FROM screen),
kept AS (SELECT * FROM keep WHERE NOT (kind || ':' || id = ANY(%(exclude)s))),
wi AS (SELECT k.who, ci.image FROM ci JOIN kept k ON k.kind = ci.kind AND k.id = ci.cid),
att AS ({ATTACHMENT_LINKS}),
files AS (
    SELECT wi.who, fe.originalfile AS file FROM wi JOIN image i ON i.id = wi.image
      JOIN filesetentry fe ON fe.fileset = i.fileset
    UNION
    SELECT wi.who, jol.child FROM wi JOIN image i ON i.id = wi.image
      JOIN filesetjoblink fjl ON fjl.parent = i.fileset
      JOIN joboriginalfilelink jol ON jol.parent = fjl.child
    UNION
    SELECT wi.who, pom.parent FROM wi JOIN pixels p ON p.image = wi.image
      JOIN pixelsoriginalfilemap pom ON pom.child = p.id
    UNION
    SELECT k.who, att.file FROM att JOIN kept k ON k.kind = att.kind AND k.id = att.cid
     WHERE %(attachments)s),
pixel_files AS (
    SELECT DISTINCT wi.who, p.id,
           div(p.sizex::numeric * p.sizey * p.sizez * p.sizec * p.sizet
            * coalesce(pt.bitsize, 8) + 7, 8) AS bytes
      FROM wi JOIN image i ON i.id = wi.image AND i.fileset IS NULL
      JOIN pixels p ON p.image = wi.image LEFT JOIN pixelstype pt ON pt.id = p.pixelstype)
SELECT who, sum(n), sum(b) FROM (
    SELECT files.who, count(*) AS n, coalesce(sum(o."size"), 0) AS b
      FROM files JOIN originalfile o ON o.id = files.file GROUP BY files.who
    UNION ALL
    SELECT who, count(*), coalesce(sum(bytes), 0) FROM pixel_files GROUP BY who) t
GROUP BY who
"""


def union_totals(conn, by, exclude=(), include_attachments=True):
    """{owner or group id: (files, bytes)} with no file counted twice.

    by: "owner" or "group"; exclude: collection keys ("Project:3") to leave out, such as
    purged collections whose files are no longer online.
    """
    column = {"owner": "owner_id", "group": "group_id"}[by]
    with conn.cursor() as cur:
        cur.execute(UNION_BY.format(who=column), {"exclude": [k.lower() for k in exclude],
                                                  "attachments": bool(include_attachments)})
        return {who: (int(n), int(b)) for who, n, b in cur.fetchall()}
