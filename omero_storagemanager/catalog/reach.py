"""Which Projects and Screens a change can reach: the incremental catalogue's up walk.

membership.py's _WALK goes up from a file to every holder, for a purge; here the same
paths are walked for collections only, one index lookup at a time (LATERAL), so that
the cost follows the number of objects asked, not the size of the facility.

Two kinds of object are asked (eventlog.reached gives both):

  - changed objects, by role ("file" and membership's object types): every collection
    holding one of them is reached;
  - moved objects ("dataset", "plate", "image" in `moved`): a Dataset linked into a
    Project, a Plate into a Screen, an Image into a Dataset or Well. Whether a fileset or
    an attachment is shared depends on every collection that holds it, so the move
    reaches not only the new parent, but every collection holding a fileset of the
    moved images or a file attached to the moved objects (and to their Wells and
    Images): their shared bytes change too.
"""
from .membership import ROLES, holders_of_images

# The contents of moved objects, as (role, id) rows for the walk: the images under them
# (and the filesets of those images), and the files attached to them, to their Wells
# and to those images. Arrays %(dataset)s, %(plate)s, %(image)s.
_MOVED_CONTENTS = """
WITH ds AS (SELECT unnest(%(dataset)s::bigint[]) AS id),
pl AS (SELECT unnest(%(plate)s::bigint[]) AS id),
wl AS MATERIALIZED (SELECT w.id FROM pl CROSS JOIN LATERAL
                     (SELECT id FROM well WHERE plate = pl.id) w),
im AS MATERIALIZED (
  SELECT unnest(%(image)s::bigint[]) AS id
  UNION SELECT l.child FROM ds CROSS JOIN LATERAL
         (SELECT child FROM datasetimagelink WHERE parent = ds.id) l
  UNION SELECT s.image FROM wl CROSS JOIN LATERAL
         (SELECT image FROM wellsample WHERE well = wl.id) s),
attached AS (
  SELECT l.child FROM ds JOIN datasetannotationlink l ON l.parent = ds.id
  UNION ALL SELECT l.child FROM pl JOIN plateannotationlink l ON l.parent = pl.id
  UNION ALL SELECT l.child FROM wl JOIN wellannotationlink l ON l.parent = wl.id
  UNION ALL SELECT l.child FROM im JOIN imageannotationlink l ON l.parent = im.id)
SELECT 'image'::text, im.id FROM im
UNION ALL SELECT 'fileset', i.fileset FROM im JOIN image i ON i.id = im.id
           WHERE i.fileset IS NOT NULL
UNION ALL SELECT 'file', a."file" FROM attached t JOIN annotation a ON a.id = t.child
           WHERE a."file" IS NOT NULL
"""
MOVED_ROLES = ("dataset", "plate", "image")

# Arrays by role: %(file)s, %(project)s, %(screen)s, %(dataset)s, %(plate)s, %(well)s,
# %(image)s, %(fileset)s, %(pixels)s. A file is followed along its roles as in
# membership's _WALK: fileset entry, import log, OMERO 4 original, and the file of
# FileAnnotations on the objects whose attachments the down walk lists (_ANNOTATED).
_ANN = ('SELECT l.parent FROM {t}annotationlink l JOIN annotation a ON a.id = l.child'
        ' WHERE a."file" = ANY(%(file)s::bigint[])')
_REACHED = f"""
WITH fs AS MATERIALIZED (
  -- The files' filesets first, by their indexes: left to itself the planner walked
  -- every image of the facility to find the few filesets holding a file.
  SELECT unnest(%(fileset)s::bigint[]) AS fileset
  UNION SELECT fe.fileset FROM filesetentry fe WHERE fe.originalfile = ANY(%(file)s::bigint[])
  UNION SELECT fjl.parent FROM joboriginalfilelink jol
         JOIN filesetjoblink fjl ON fjl.child = jol.parent
         WHERE jol.child = ANY(%(file)s::bigint[])),
img AS MATERIALIZED (
  SELECT unnest(%(image)s::bigint[]) AS image
  UNION SELECT i.id FROM fs CROSS JOIN LATERAL
         (SELECT id FROM image WHERE fileset = fs.fileset) i
  UNION SELECT p.image FROM pixels p WHERE p.id = ANY(%(pixels)s::bigint[])
  UNION SELECT p.image FROM pixelsoriginalfilemap pom JOIN pixels p ON p.id = pom.child
         WHERE pom.parent = ANY(%(file)s::bigint[])
  UNION {_ANN.format(t="image")}),
ds AS (SELECT unnest(%(dataset)s::bigint[]) AS id UNION {_ANN.format(t="dataset")}),
pl AS (SELECT unnest(%(plate)s::bigint[]) AS id
       UNION SELECT w.plate FROM well w WHERE w.id = ANY(%(well)s::bigint[])
       UNION {_ANN.format(t="plate")}
       UNION SELECT w.plate FROM well w WHERE w.id IN ({_ANN.format(t="well")}))
SELECT 'project'::text, unnest(%(project)s::bigint[])
UNION SELECT 'screen', unnest(%(screen)s::bigint[])
UNION SELECT 'project', l.parent FROM ({_ANN.format(t="project")}) l(parent)
UNION SELECT 'screen', l.parent FROM ({_ANN.format(t="screen")}) l(parent)
UNION SELECT 'project', pdl.parent FROM ds JOIN projectdatasetlink pdl ON pdl.child = ds.id
UNION SELECT 'screen', spl.parent FROM pl JOIN screenplatelink spl ON spl.child = pl.id
UNION SELECT h.kind, h.cid FROM img CROSS JOIN LATERAL ({holders_of_images("= img.image")}) h
"""


def _ids(values):
    return sorted({int(i) for i in values or ()})


def collections_reached(conn, asked, moved=None):
    """{(kind, id)} of every Project and Screen that a change to the objects `asked`
    ({role: ids}, roles "file" and membership's object types), or a move of the objects
    `moved` ({"dataset"|"plate"|"image": ids}), can alter: what the incremental
    catalogue refreshes. Ids of objects that no longer exist are fine (a project asked
    by id comes back as asked: the sync finds whether it exists)."""
    unknown = (set(asked) - set(ROLES)) | (set(moved or ()) - set(MOVED_ROLES))
    if unknown:
        raise ValueError(f"not a role of the walk: {', '.join(sorted(unknown))}")
    params = {role: _ids(asked.get(role)) for role in ROLES}
    with conn.cursor() as cur:
        if moved and any(moved.values()):
            cur.execute(_MOVED_CONTENTS, {r: _ids(moved.get(r)) for r in MOVED_ROLES})
            for role, oid in cur.fetchall():
                params[role].append(int(oid))
            params = {role: sorted(set(ids)) for role, ids in params.items()}
        if not any(params.values()):
            return set()
        cur.execute(_REACHED, params)
        return {(kind, int(cid)) for kind, cid in cur.fetchall() if cid is not None}
