"""The bulk scan's statements on OMERO's tables (engine/bulk.py runs them): every file of
every fileset and image as rows for the stat workers, the pixels of pyramids found on
disk, and who holds each unit. Read only; built from membership.py's walks.
"""
from collections import defaultdict

from .membership import ATTACHMENT_LINKS, COLLECTION_IMAGE_FILESETS, COLLECTION_IMAGES

# The worker's row: unit type, unit id, kind, folder and name (OMERO's path and name of
# a managed repository file, as stored: statworker.py opens each folder once; NULL where
# the file is below the data dir: OMERO derives Files/, Pixels/ and Thumbnails/ paths
# from the id), file id, OMERO's size, hash and algorithm (see rows_sql). A "/" at
# either end of a path or at the start of a name means nothing: the workers allow for
# it (trimming a million paths in the server was a sixth of the stream's cost there).
_REL = ("CASE WHEN o.repo IS NULL THEN NULL ELSE o.path END, "
        "CASE WHEN o.repo IS NULL THEN NULL ELSE o.name END")
# Verify needs the hash and its algorithm; stat only whether there is a hash (an empty
# field for yes, NULL for no): a million 40-character hashes are a third of the bytes
# PostgreSQL formats and the workers parse, for nothing.
_OF_VERIFY = f'{_REL}, o.id, o."size", o.hash, ca.value'
_OF_STAT = f"""{_REL}, o.id, o."size", CASE WHEN o.hash IS NULL THEN NULL ELSE '' END, NULL"""
_OF_JOIN_VERIFY = "LEFT JOIN checksumalgorithm ca ON ca.id = o.hasher"
# Every file of every fileset and image, whether a collection holds it or not: the
# rows start at once, while the collections' images (a set of every image of every
# Project and Screen) would take the server most of a second to build before the
# first row, with the workers idle. A unit no collection holds is stat'ed for nothing
# and dropped when the units are added up (_add_up): orphaned images are few.
_ROWS = """
SELECT 'f', fe.fileset, 'fileset_entry', @OF@
  FROM filesetentry fe JOIN originalfile o ON o.id = fe.originalfile @JOIN@
UNION ALL
SELECT 'f', fjl.parent, 'import_log', @OF@
  FROM filesetjoblink fjl JOIN joboriginalfilelink jol ON jol.parent = fjl.child
  JOIN originalfile o ON o.id = jol.child @JOIN@
UNION ALL
SELECT 'i', p.image, 'original', @OF@
  FROM pixels p JOIN pixelsoriginalfilemap pom ON pom.child = p.id
  JOIN originalfile o ON o.id = pom.parent @JOIN@
UNION ALL
SELECT 'i', p.image, 'pixels', NULL, NULL, p.id,
       div(p.sizex::numeric * p.sizey * p.sizez * p.sizec * p.sizet
           * coalesce(pt.bitsize, 8) + 7, 8)::bigint, NULL, NULL
  FROM image i JOIN pixels p ON p.image = i.id
  LEFT JOIN pixelstype pt ON pt.id = p.pixelstype
 WHERE i.fileset IS NULL
UNION ALL
SELECT 'i', p.image, 'thumbnail', NULL, NULL, t.id, NULL, NULL, NULL
  FROM pixels p JOIN thumbnail t ON t.pixels = p.id
"""
_ATTACHMENT_ROWS = f"""
WITH ci AS ({COLLECTION_IMAGES}), att AS ({ATTACHMENT_LINKS})
SELECT 'a', o.id, 'attachment', @OF@
  FROM (SELECT DISTINCT file FROM att) a JOIN originalfile o ON o.id = a.file @JOIN@
"""


def rows_sql(verify):
    """(files, attachments) statements of the worker's rows, for stat or verify."""
    of, join = (_OF_VERIFY, _OF_JOIN_VERIFY) if verify else (_OF_STAT, "")
    return tuple(sql.replace("@OF@", of).replace("@JOIN@", join)
                 for sql in (_ROWS, _ATTACHMENT_ROWS))


# Pyramids found on disk, with the image of their pixels.
PYRAMID_IMAGES = "SELECT p.id, p.image FROM pixels p WHERE p.id = ANY(%s)"
# Who holds each fileset, and each collection's image count, in one statement (the
# collections' images, with their filesets, are computed once: joining the image table
# inside that set's branches, not after it, costs the server a tenth less).
HOLDERS = f"""
WITH cif AS MATERIALIZED ({COLLECTION_IMAGE_FILESETS})
SELECT DISTINCT 'f', fileset, kind, cid, 0::bigint FROM cif WHERE fileset IS NOT NULL
UNION ALL
SELECT 'n', 0, kind, cid, count(*) FROM cif GROUP BY kind, cid
"""
# Only images with something on disk of their own are units; their holders are asked
# for by id once the units are known (most facilities' images are FS images: a fileset
# unit holds their data, and this query is not needed).
IMAGE_HOLDERS = f"SELECT image, kind, cid FROM ({COLLECTION_IMAGES}) ci WHERE image = ANY(%s)"
ATTACHMENT_HOLDERS = f"""
WITH ci AS ({COLLECTION_IMAGES}), att AS ({ATTACHMENT_LINKS})
SELECT file, kind, cid FROM att
"""

def copy_rows(conn, verify, include_attachments, sink):
    """Stream the workers' rows (rows_sql) in COPY text format into sink.write."""
    files_sql, attachments_sql = rows_sql(verify)
    with conn.cursor() as cur:
        cur.copy_expert(f"COPY ({files_sql}) TO STDOUT", sink)
        if include_attachments:
            cur.copy_expert(f"COPY ({attachments_sql}) TO STDOUT", sink)


def images_of_pixels(conn, pixels_ids):
    """{pixels id: image id} of these pixels (those that exist)."""
    with conn.cursor() as cur:
        cur.execute(PYRAMID_IMAGES, (sorted(pixels_ids),))
        return dict(cur.fetchall())


def holders_of(conn, include_attachments=True):
    """({unit: {(kind, collection id)}} of filesets and attachments, {(kind, id): images})."""
    holders = defaultdict(set)
    images = {}
    with conn.cursor() as cur:
        cur.execute(HOLDERS)
        for unit_type, unit_id, kind, cid, count in cur:
            if unit_type == "n":
                images[(kind, cid)] = count
            else:
                holders[(unit_type, unit_id)].add((kind, cid))
        if include_attachments:
            cur.execute(ATTACHMENT_HOLDERS)
            for file_id, kind, cid in cur:
                holders[("a", file_id)].add((kind, cid))
    return holders, images


def add_image_holders(conn, units, holders):
    image_units = sorted(uid for utype, uid in units if utype == "i")
    if image_units:
        with conn.cursor() as cur:
            cur.execute(IMAGE_HOLDERS, (image_units,))
            for image, kind, cid in cur:
                holders[("i", image)].add((kind, cid))
