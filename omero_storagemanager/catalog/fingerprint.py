"""A fingerprint of what OMERO records of each collection's files, for every collection
in one statement: what the automatic archive compares with the fingerprint it saw the
last time a collection's archive plan found nothing to copy (tasks/policy.py), so that a
quiet night does not plan every collection again.

The fingerprint changes whenever the set of files changes, whatever their number: OMERO
gives new objects ever larger ids (its sequences), so a file replaced by another (same
count, even same size) raises the sum of ids. A file's size, mtime or checksum changed
in place changes the sums too. Images count by their Pixels ids (an OMERO 4 image's
Pixels/ file and a pyramid are files without an originalfile row). It says nothing of
the disk: the memo's other half is the collection's last stat scan.
"""
from .membership import COLLECTION_IMAGE_FILESETS, attachment_links

# Files reached through the collection's filesets (entries and import logs), its
# images' OMERO 4 archived originals and, when counted, its attachments: each once.
_HELD = """
WITH ci AS MATERIALIZED ({images}),
held AS (
    SELECT c.kind, c.cid, fe.originalfile AS file
      FROM (SELECT DISTINCT kind, cid, fileset FROM ci WHERE fileset IS NOT NULL) c
      JOIN filesetentry fe ON fe.fileset = c.fileset
    UNION
    SELECT c.kind, c.cid, jol.child
      FROM (SELECT DISTINCT kind, cid, fileset FROM ci WHERE fileset IS NOT NULL) c
      JOIN filesetjoblink fjl ON fjl.parent = c.fileset
      JOIN joboriginalfilelink jol ON jol.parent = fjl.child
    UNION
    SELECT ci.kind, ci.cid, pom.parent
      FROM ci JOIN pixels p ON p.image = ci.image
      JOIN pixelsoriginalfilemap pom ON pom.child = p.id
    {attachments}
)
SELECT h.kind, h.cid, count(*), sum(o.id)::text, coalesce(sum(o."size"), 0)::text,
       max(o.mtime)::text, sum(hashtext(coalesce(o.hash, '')))::text
  FROM held h JOIN originalfile o ON o.id = h.file GROUP BY h.kind, h.cid
"""

_PIXELS = f"""
WITH ci AS ({COLLECTION_IMAGE_FILESETS})
SELECT ci.kind, ci.cid, count(DISTINCT p.id), sum(DISTINCT p.id)::text
  FROM ci JOIN pixels p ON p.image = ci.image GROUP BY ci.kind, ci.cid
"""


def content_fingerprints(conn, include_attachments=True):
    """{(kind, omero id): a tuple that changes when the collection's files change in
    OMERO}; a collection holding nothing is absent."""
    attachments = f"UNION {attachment_links('ci')}" if include_attachments else ""
    prints = {}
    with conn.cursor() as cur:
        cur.execute(_HELD.format(images=COLLECTION_IMAGE_FILESETS, attachments=attachments))
        for kind, cid, *figures in cur:
            prints[(kind, cid)] = ("files", *figures)
        cur.execute(_PIXELS)
        for kind, cid, *figures in cur:
            prints[(kind, cid)] = prints.get((kind, cid), ()) + ("pixels", *figures)
    return prints
