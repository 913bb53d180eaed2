"""The catalogue figures of some collections only: what the incremental catalogue
refreshes (engine/incremental.py) after a change reached them.

The statements are totals.py's, with two differences. The collections' images are
those of the asked collections only (membership.SCOPED_IMAGE_FILESETS). But whether a
fileset, an OMERO 4 image or an attachment is shared depends on every collection that
holds it, asked or not: those counts are taken over all collections, for the filesets,
images and files of the asked ones only (membership.holders_of_images). The rows are
added up by totals.assemble, as a full scan's are, so both give equal figures; the
property test (tests/test_incremental_property.py) holds them to it.
"""
from .membership import SCOPED_IMAGE_FILESETS, attachment_links, holders_of_images
from .totals import PARTS_TAIL, assemble

SCOPED_PARTS = f"""WITH cimg AS MATERIALIZED ({SCOPED_IMAGE_FILESETS}),
cf AS MATERIALIZED (SELECT DISTINCT kind, cid, fileset FROM cimg WHERE fileset IS NOT NULL),
fsimg AS MATERIALIZED (
    SELECT i.id AS image, i.fileset FROM (SELECT DISTINCT fileset FROM cf) c
     CROSS JOIN LATERAL (SELECT id, fileset FROM image WHERE fileset = c.fileset) i),
holders AS (
    SELECT f.fileset, count(DISTINCT (h.kind, h.cid)) AS n
      FROM fsimg f CROSS JOIN LATERAL ({holders_of_images("= f.image")}) h
     GROUP BY f.fileset),
images AS (SELECT kind, cid, count(*) AS images FROM cimg GROUP BY kind, cid),
extra AS MATERIALIZED (
    SELECT image, sum(files) AS files, sum(bytes) AS bytes, max(newest) AS newest,
           sum(unhashed) AS unhashed
      FROM (SELECT p.image, 1 AS files,
                   div(p.sizex::numeric * p.sizey * p.sizez * p.sizec * p.sizet
                       * coalesce(pt.bitsize, 8) + 7, 8) AS bytes,
                   NULL::timestamp AS newest, 1 AS unhashed
              FROM image i JOIN pixels p ON p.image = i.id
              LEFT JOIN pixelstype pt ON pt.id = p.pixelstype
             WHERE i.fileset IS NULL AND i.id IN (SELECT image FROM cimg)
            UNION ALL
            SELECT p.image, 1, o."size", o.mtime, CASE WHEN o.hash IS NULL THEN 1 ELSE 0 END
              FROM pixelsoriginalfilemap pom JOIN pixels p ON p.id = pom.child
              JOIN originalfile o ON o.id = pom.parent
             WHERE p.image IN (SELECT image FROM cimg)) x
     GROUP BY image),
extra_holders AS (
    SELECT x.image, count(*) AS n
      FROM extra x CROSS JOIN LATERAL ({holders_of_images("= x.image")}) h GROUP BY x.image),
held_extra AS (SELECT c.kind, c.cid, x.*, eh.n
                 FROM extra x JOIN cimg c ON c.image = x.image
                 JOIN extra_holders eh ON eh.image = x.image),
{PARTS_TAIL}"""

# totals.FILESET_FIGURES for the filesets in %(filesets)s. LATERAL, one fileset and one
# file at a time by their indexes: a few thousand filesets are a few per cent of the
# facility, where the planner would rather hash the whole originalfile table.
SCOPED_FILESET_FIGURES = """
SELECT f.id, count(*), sum(o."size")::bigint, max(o.mtime),
       count(*) FILTER (WHERE o.hash IS NULL)
  FROM unnest(%(filesets)s::bigint[]) f(id)
 CROSS JOIN LATERAL (SELECT originalfile AS file FROM filesetentry WHERE fileset = f.id
                     UNION ALL
                     SELECT jol.child FROM filesetjoblink fjl
                       JOIN joboriginalfilelink jol ON jol.parent = fjl.child
                      WHERE fjl.parent = f.id) x
 CROSS JOIN LATERAL (SELECT "size", mtime, hash FROM originalfile WHERE id = x.file) o
 GROUP BY f.id
"""

_SCOPED_IMAGES = SCOPED_IMAGE_FILESETS.replace(", i.fileset", "")
_ASKED = ("(kind = 'project' AND cid = ANY(%(project)s::bigint[]))"
          " OR (kind = 'screen' AND cid = ANY(%(screen)s::bigint[]))")
# totals.ATTACHMENTS for the asked collections; a file's holders among all collections.
SCOPED_ATTACHMENTS = f"""
WITH ci AS ({_SCOPED_IMAGES}),
att AS MATERIALIZED (SELECT * FROM ({attachment_links("ci")}) a WHERE {_ASKED}),
ci_all AS (
    {holders_of_images('''IN (SELECT l.parent FROM imageannotationlink l
                             JOIN annotation a ON a.id = l.child
                            WHERE a."file" IN (SELECT file FROM att))''')}),
att_all AS (SELECT * FROM ({attachment_links("ci_all")}) a
             WHERE file IN (SELECT file FROM att)),
holders AS (SELECT file, count(*) AS n FROM att_all GROUP BY file)
SELECT att.kind, att.cid, count(*), sum(o."size"), max(o.mtime),
       count(*) FILTER (WHERE o.hash IS NULL),
       coalesce(sum(o."size") FILTER (WHERE h.n > 1), 0)
  FROM att JOIN originalfile o ON o.id = att.file JOIN holders h ON h.file = att.file
 GROUP BY att.kind, att.cid
"""


def fileset_figures_of(conn, filesets):
    """{fileset id: (files, bytes, newest, unhashed)} of the filesets `filesets` that
    have files, as totals.fileset_figures gives them."""
    with conn.cursor() as cur:
        cur.execute(SCOPED_FILESET_FIGURES, {"filesets": sorted(filesets)})
        return {row[0]: row[1:] for row in cur}


def figures_of(conn, keys, include_attachments=True, per_fileset=None):
    """{(kind, id): Figures} of the collections `keys` ((kind, id) pairs) that hold
    anything, equal to what totals.collection_figures gives them.

    per_fileset: a callable given the filesets of those collections and returning their
    figures (fileset_figures_of's), such as one that takes those it kept from an earlier
    refresh (engine/filesetcache.py); fileset_figures_of by default."""
    params = {"project": sorted({i for k, i in keys if k == "project"}),
              "screen": sorted({i for k, i in keys if k == "screen"})}
    if not params["project"] and not params["screen"]:
        return {}
    with conn.cursor() as cur:
        cur.execute(SCOPED_PARTS, params)
        parts = cur.fetchall()
        filesets = sorted({f for row in parts for f in (row[9] or ())})
        figures = (per_fileset(filesets) if per_fileset is not None
                   else fileset_figures_of(conn, filesets))
        attachments = None
        if include_attachments:
            cur.execute(SCOPED_ATTACHMENTS, params)
            attachments = cur.fetchall()
    return assemble(parts, attachments, figures)
