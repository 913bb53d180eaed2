"""Who holds what: the one module that knows how OMERO's objects hold files.

Down, from a Project or Screen to its files (what the catalog lists, scans, archives):

    Project -> projectdatasetlink -> Dataset -> datasetimagelink -> Image
    Screen  -> screenplatelink -> Plate -> Well -> WellSample -> Image
    Image   -> its fileset, whole (entries and import logs), its Pixels/<id> file and
               pyramid, its OMERO 4 archived originals (pixelsoriginalfilemap);
    file annotations on the collection, its Datasets (Plates, Wells) and its Images.

IMAGES_OF, FILESETS_OF, attachments_of() (one collection), COLLECTION_IMAGES,
COLLECTION_IMAGE_FILESETS, ATTACHMENT_LINKS (every collection at once) and
SCOPED_IMAGE_FILESETS, holders_of_images(), attachment_links() (some collections, some
images: the incremental catalogue's scoped.py) are the only SQL of that walk:
inventory.py, totals.py, scoped.py, objects.py and engine/bulk.py build theirs from them.

reach.py walks up for collections only, one index lookup at a time: what a change
can reach, for the incremental catalogue.

Up, from a file to everything that holds it (holders(), other_holders()): the same walk
backwards, along every path OMERO has, including those that end outside every Project
and Screen. A purge deletes a file only when each of its holders is purged with it or
already, so every holder is named, as a key a purge can show:

    Project:3, Screen:4               a collection holds it (is_collection_key)
    Dataset:5 (in no Project)         one of its images is in a Dataset no Project holds
    Plate:8 (in no Screen)            ... in a Well of a Plate no Screen holds
    Image:7 (orphaned)                ... is in no Dataset and no Well
    FileAnnotation:12 on Image:7      it is attached to an object from which some path
                                      ends outside every collection, or to an object no
                                      collection lists attachments of (a Fileset, a
                                      PlateAcquisition, an ROI, ...)
    FileAnnotation:12 (on no object)  it is the file of an annotation linked to nothing

A collection key comes back exactly where the down walk of that collection lists the
file: the two walks agree, and what only one of them sees always blocks a purge.
"""
import re
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Set

KINDS = ("project", "screen")

# -- down: from collections to their images and attachments -----------------------------

# The path from a collection to its images: joins, the collection's column, the image's.
_DOWN = {
    "project": ("projectdatasetlink pdl JOIN datasetimagelink dil ON dil.parent = pdl.child",
                "pdl.parent", "dil.child"),
    "screen": ("screenplatelink spl JOIN well w ON w.plate = spl.child"
               " JOIN wellsample ws ON ws.well = w.id", "spl.parent", "ws.image"),
}
# One collection's images (%(cid)s), as rows of `id`.
IMAGES_OF = {kind: f"SELECT DISTINCT {image} AS id FROM {joins} WHERE {cid} = %(cid)s"
             for kind, (joins, cid, image) in _DOWN.items()}
# One collection's filesets (%(cid)s), as rows of `id`.
FILESETS_OF = {kind: f"SELECT DISTINCT i.fileset AS id FROM ({sql}) img"
                     " JOIN image i ON i.id = img.id WHERE i.fileset IS NOT NULL"
               for kind, sql in IMAGES_OF.items()}
# Every image of every collection, once per (collection, image).
COLLECTION_IMAGES = "\nUNION\n".join(
    f"SELECT '{kind}'::text AS kind, {cid} AS cid, {image} AS image FROM {joins}"
    for kind, (joins, cid, image) in _DOWN.items())
# The same with each image's fileset: the image table is joined inside each branch so
# the set is built in one pass (totals.py, engine/bulk.py).
COLLECTION_IMAGE_FILESETS = "\nUNION\n".join(
    f"SELECT '{kind}'::text AS kind, {cid} AS cid, i.id AS image, i.fileset"
    f" FROM {joins} JOIN image i ON i.id = {image}"
    for kind, (joins, cid, image) in _DOWN.items())

# Some collections only (the incremental catalogue, totals.figures_of): the same rows for
# the Projects in %(project)s and the Screens in %(screen)s (arrays of ids).
SCOPED_IMAGE_FILESETS = "\nUNION\n".join(
    f"SELECT '{kind}'::text AS kind, {cid} AS cid, i.id AS image, i.fileset"
    f" FROM {joins} JOIN image i ON i.id = {image} WHERE {cid} = ANY(%({kind})s::bigint[])"
    for kind, (joins, cid, image) in _DOWN.items())


def holders_of_images(images):
    """SQL of every collection holding some images, as (kind, cid, image) rows, each once;
    `images` completes `<image column> <images>`, such as "IN (SELECT image FROM x)"."""
    return "\nUNION\n".join(
        f"SELECT '{kind}'::text AS kind, {cid} AS cid, {image} AS image FROM {joins}"
        f" WHERE {image} {images}"
        for kind, (joins, cid, image) in _DOWN.items())


# The objects of a collection whose file annotations it holds, besides its images:
# (link table's object type, joins from the link `l` up to the collection, its column).
_ANNOTATED = {
    "project": (("project", "", "l.parent"),
                ("dataset", " JOIN projectdatasetlink pdl ON pdl.child = l.parent", "pdl.parent")),
    "screen": (("screen", "", "l.parent"),
               ("plate", " JOIN screenplatelink spl ON spl.child = l.parent", "spl.parent"),
               ("well", " JOIN well w ON w.id = l.parent"
                        " JOIN screenplatelink spl ON spl.child = w.plate", "spl.parent")),
}
_FILE_LINK = 'annotationlink l JOIN annotation a ON a.id = l.child'


def attachments_of(kind, images="= ANY(%(images)s)"):
    """SQL of one collection's attachment files (rows of `file`) for %(cid)s; `images`
    completes `l.parent <images>` for the collection's images (an ANY(array) by default,
    or an IN over a CTE)."""
    branches = [f'SELECT a."file" FROM {otype}{_FILE_LINK}{joins}'
                f' WHERE {cid} = %(cid)s AND a."file" IS NOT NULL'
                for otype, joins, cid in _ANNOTATED[kind]]
    branches.append(f'SELECT a."file" FROM image{_FILE_LINK}'
                    f' WHERE l.parent {images} AND a."file" IS NOT NULL')
    return "\nUNION\n".join(branches)


def attachment_links(ci="ci"):
    """SQL of the file attachments of every collection: (kind, cid, file) rows. Needs a
    CTE named `ci` of collection images (kind, cid, image), such as COLLECTION_IMAGES:
    the attachments of the images it lists are the ones found."""
    return "\nUNION\n".join(
        [f"SELECT '{kind}'::text AS kind, {cid} AS cid, a.\"file\" AS file"
         f" FROM {otype}{_FILE_LINK}{joins} WHERE a.\"file\" IS NOT NULL"
         for kind, objects in _ANNOTATED.items() for otype, joins, cid in objects]
        + [f'SELECT ci.kind, ci.cid, a."file" FROM image{_FILE_LINK}'
           f' JOIN {ci} ci ON ci.image = l.parent WHERE a."file" IS NOT NULL'])


ATTACHMENT_LINKS = attachment_links()

# -- up: from files and objects to everything that holds them ---------------------------

# Objects the up walk follows to their collections (or to where their path ends).
_WALKED = ("project", "screen", "dataset", "plate", "well", "image", "fileset", "pixels")
# Every object a FileAnnotation can be linked to in OMERO 5.4 (<type>annotationlink),
# with the name its key shows. Those the database lacks are skipped (looked up once per
# connection): a real OMERO has them all, the test bed only the first seven.
_LINKED = {"project": "Project", "dataset": "Dataset", "image": "Image", "screen": "Screen",
           "plate": "Plate", "well": "Well", "fileset": "Fileset",
           "plateacquisition": "PlateAcquisition", "roi": "Roi", "shape": "Shape",
           "channel": "Channel", "planeinfo": "PlaneInfo", "annotation": "Annotation",
           "experimenter": "Experimenter", "experimentergroup": "ExperimenterGroup",
           "folder": "Folder", "namespace": "Namespace", "node": "Node",
           "originalfile": "OriginalFile", "session": "Session", "reagent": "Reagent",
           "instrument": "Instrument", "detector": "Detector", "dichroic": "Dichroic",
           "filter": "Filter", "lightpath": "LightPath", "lightsource": "LightSource",
           "objective": "Objective"}
# Objects whose attachments the down walk lists (see _ANNOTATED): only an annotation on
# one of these can be held by a collection.
_ATTACHED_IN_COLLECTIONS = ("project", "dataset", "image", "screen", "plate", "well")
_ORPHAN = {"dataset": "Dataset:{} (in no Project)", "plate": "Plate:{} (in no Screen)",
           "image": "Image:{} (orphaned)"}
_COLLECTION_KEY = re.compile(r"^(Project|Screen):\d+$")

_WALK = """
WITH ann AS MATERIALIZED (
  SELECT id, "file" FROM annotation WHERE "file" = ANY(%(file)s::bigint[])),
roots AS MATERIALIZED (
  {asked}
  UNION ALL SELECT 'file', fe.originalfile, 'fileset', fe.fileset, NULL
    FROM filesetentry fe WHERE fe.originalfile = ANY(%(file)s::bigint[])
  UNION ALL SELECT 'file', jol.child, 'fileset', fjl.parent, NULL FROM joboriginalfilelink jol
    JOIN filesetjoblink fjl ON fjl.child = jol.parent WHERE jol.child = ANY(%(file)s::bigint[])
  UNION ALL SELECT 'file', pom.parent, 'pixels', pom.child, NULL
    FROM pixelsoriginalfilemap pom WHERE pom.parent = ANY(%(file)s::bigint[])
  {linked}
  UNION ALL SELECT 'file', a."file", NULL, NULL, a.id FROM ann a WHERE {unlinked}),
objs AS MATERIALIZED (SELECT DISTINCT type, obj FROM roots WHERE type = ANY(%(walked)s::text[])),
img AS MATERIALIZED (
  SELECT o.type, o.obj, i.id AS image FROM objs o JOIN image i ON i.fileset = o.obj
   WHERE o.type = 'fileset'
  UNION SELECT o.type, o.obj, p.image FROM objs o JOIN pixels p ON p.id = o.obj
   WHERE o.type = 'pixels'
  UNION SELECT o.type, o.obj, i.id FROM objs o JOIN image i ON i.id = o.obj
   WHERE o.type = 'image'),
ds AS MATERIALIZED (
  SELECT m.type, m.obj, dil.parent AS dataset FROM img m
    JOIN datasetimagelink dil ON dil.child = m.image
  UNION SELECT o.type, o.obj, d.id FROM objs o JOIN dataset d ON d.id = o.obj
   WHERE o.type = 'dataset'),
pl AS MATERIALIZED (
  SELECT m.type, m.obj, w.plate FROM img m JOIN wellsample ws ON ws.image = m.image
    JOIN well w ON w.id = ws.well
  UNION SELECT o.type, o.obj, w.plate FROM objs o JOIN well w ON w.id = o.obj
   WHERE o.type = 'well'
  UNION SELECT o.type, o.obj, p.id FROM objs o JOIN plate p ON p.id = o.obj
   WHERE o.type = 'plate'),
held AS (
  SELECT d.type, d.obj, 'project'::text AS kind, pdl.parent AS hid FROM ds d
    JOIN projectdatasetlink pdl ON pdl.child = d.dataset
  UNION SELECT d.type, d.obj, 'dataset', d.dataset FROM ds d
   WHERE NOT EXISTS (SELECT 1 FROM projectdatasetlink pdl WHERE pdl.child = d.dataset)
  UNION SELECT p.type, p.obj, 'screen', spl.parent FROM pl p
    JOIN screenplatelink spl ON spl.child = p.plate
  UNION SELECT p.type, p.obj, 'plate', p.plate FROM pl p
   WHERE NOT EXISTS (SELECT 1 FROM screenplatelink spl WHERE spl.child = p.plate)
  UNION SELECT m.type, m.obj, 'image', m.image FROM img m
   WHERE NOT EXISTS (SELECT 1 FROM datasetimagelink dil WHERE dil.child = m.image)
     AND NOT EXISTS (SELECT 1 FROM wellsample ws WHERE ws.image = m.image)
  UNION SELECT o.type, o.obj, 'project', x.id FROM objs o JOIN project x ON x.id = o.obj
   WHERE o.type = 'project'
  UNION SELECT o.type, o.obj, 'screen', x.id FROM objs o JOIN screen x ON x.id = o.obj
   WHERE o.type = 'screen')
SELECT 'r', what, id, ann, type, obj, NULL, NULL FROM roots
UNION ALL
SELECT 'h', NULL, NULL, NULL, type, obj, kind, hid FROM held
"""
# The asked objects' own rows: role, id, and the object the walk starts from (itself).
_ASKED = ("SELECT '{t}'::text AS what, x AS id, '{t}'::text AS type, x AS obj,"
          " NULL::bigint AS ann FROM unnest(%({t})s::bigint[]) x")
ROLES = ("file",) + _WALKED
_present = weakref.WeakKeyDictionary()  # connection -> link tables its database has
_statements = {}  # link tables present -> the up walk's statement


def is_collection_key(key):
    """True for "Project:3" and "Screen:4", False for every other holder key."""
    return bool(_COLLECTION_KEY.match(key))


def collection_keys(keys):
    """The keys among `keys` that name a collection (scan figures count only those)."""
    return [k for k in keys if _COLLECTION_KEY.match(k)]


def _key(kind, hid):
    if kind in KINDS:
        return f"{kind.capitalize()}:{hid}"
    return _ORPHAN[kind].format(hid)


def _link_tables(conn):
    """The object types of _LINKED whose annotation link table this database has."""
    try:
        found = _present.get(conn)
    except TypeError:  # a connection that takes no weak reference: ask every time
        found = None
    if found is None:
        with conn.cursor() as cur:
            cur.execute("SELECT t FROM unnest(%s::text[]) t"
                        " WHERE to_regclass(t || 'annotationlink') IS NOT NULL",
                        [list(_LINKED)])
            present = {r[0] for r in cur.fetchall()}
        found = tuple(t for t in _LINKED if t in present)
        try:
            _present[conn] = found
        except TypeError:
            pass
    return found


def _statement(links):
    sql = _statements.get(links)
    if sql is None:
        linked = "\n  ".join(
            f"UNION ALL SELECT 'file', a.\"file\", '{t}', l.parent, a.id FROM ann a"
            f" JOIN {t}annotationlink l ON l.child = a.id" for t in links)
        unlinked = " AND ".join(
            f"NOT EXISTS (SELECT 1 FROM {t}annotationlink l WHERE l.child = a.id)"
            for t in links) or "true"
        asked = "\n  UNION ALL ".join(_ASKED.format(t=t) for t in _WALKED)
        sql = _statements[links] = _WALK.format(asked=asked, linked=linked,
                                                unlinked=unlinked)
    return sql


def _walk(conn, asked):
    """{(role, id): set of holder keys} and {(role, id): set of (kind, id) collections}
    for every id asked (asked: {role: ids}), in one statement."""
    params = {role: sorted({int(i) for i in asked.get(role, ())}) for role in ROLES}
    params["walked"] = list(_WALKED)
    with conn.cursor() as cur:
        cur.execute(_statement(_link_tables(conn)), params)
        rows = cur.fetchall()
    held = defaultdict(set)
    roots = []
    for tag, what, oid, ann, otype, obj, kind, hid in rows:
        if tag == "h":
            held[(otype, obj)].add((kind, hid))
        else:
            roots.append((what, oid, ann, otype, obj))
    keys = {(role, i): set() for role in ROLES for i in params[role]}
    collections = defaultdict(set)  # (role, id) -> {(kind, id)}: objects asked only
    for what, oid, ann, otype, obj in roots:
        found = held.get((otype, obj), set())
        out = keys[(what, oid)]
        if ann is None:  # a file or object held where its images (or itself) are
            out.update(_key(*h) for h in found)
            collections[(what, oid)].update(h for h in found if h[0] in KINDS)
        elif otype is None:
            out.add(f"FileAnnotation:{ann} (on no object)")
        else:
            # Only an attachment the down walk lists can be held by a collection.
            mine = ({h for h in found if h[0] in KINDS}
                    if otype in _ATTACHED_IN_COLLECTIONS else set())
            out.update(_key(*h) for h in mine)
            if len(mine) < len(found) or not found:  # some path ends outside them
                out.add(f"FileAnnotation:{ann} on {_LINKED[otype]}:{obj}")
    return keys, collections


@dataclass
class Held:
    """Holder keys of what holders() was asked, per id (an empty set: nothing holds it)."""

    files: Dict[int, Set[str]] = field(default_factory=dict)
    filesets: Dict[int, Set[str]] = field(default_factory=dict)
    pixels: Dict[int, Set[str]] = field(default_factory=dict)
    images: Dict[int, Set[str]] = field(default_factory=dict)

    def of(self, record):
        """Every holder of a FileRecord's file, as far as it was asked: its fileset (an
        entry or import log), its pixels (a Pixels/ file or pyramid: no original file)
        and its original file along every role it has."""
        keys = set()
        if record.fileset_id is not None:
            keys |= self.filesets.get(record.fileset_id, set())
        if record.originalfile_id is None:
            if record.pixels_id is not None:
                keys |= self.pixels.get(record.pixels_id, set())
        else:
            keys |= self.files.get(record.originalfile_id, set())
        return keys


def holders(conn, originalfile_ids=(), pixels_ids=(), fileset_ids=(), image_ids=()):
    """Everything that holds each of these, in one statement (plus, once per connection,
    a look at which annotation link tables exist). Returns a Held.

    An original file is followed along every role it has: fileset entry, import log,
    OMERO 4 archived original, the file of FileAnnotations (on any object, or none).
    Pixels stand for their Pixels/<id> file and pyramid, a fileset for its entries and
    import logs: both are held where their images are."""
    keys, _ = _walk(conn, {"file": originalfile_ids, "pixels": pixels_ids,
                           "fileset": fileset_ids, "image": image_ids})
    held = Held()
    by_role = {"file": held.files, "fileset": held.filesets, "pixels": held.pixels,
               "image": held.images}
    for (role, oid), found in keys.items():
        if role in by_role:
            by_role[role][oid] = found
    return held


def record_holders(conn, records, every_role=True):
    """{record.path: set of every holder key of that file} for FileRecords (entries,
    import logs, Pixels/ files, pyramids, originals, attachments), in one statement.

    every_role: ask each original file along all its roles (the purge's check before a
    delete, a batch of a few hundred files); False asks a fileset's entries and import
    logs by their fileset only (a whole collection's inventory: far fewer ids)."""
    records = list(records)
    held = holders(
        conn,
        originalfile_ids={r.originalfile_id for r in records if r.originalfile_id is not None
                          and (every_role or r.fileset_id is None)},
        pixels_ids={r.pixels_id for r in records
                    if r.originalfile_id is None and r.pixels_id is not None},
        fileset_ids={r.fileset_id for r in records if r.fileset_id is not None})
    return {r.path: held.of(r) for r in records}


def other_holders(conn, records, me=(), every_role=True):
    """{record.path: sorted holder keys of that file other than `me`} for FileRecords.

    me: a collection key, or the keys of everything purged together (along_with)."""
    me = {me} if isinstance(me, str) else set(me)
    return {path: sorted(keys - me)
            for path, keys in record_holders(conn, records, every_role).items()}


def object_holders(conn, dtype, ids):
    """{id: set of holder keys} of OMERO objects of one type (project, screen, dataset,
    plate, well, image, fileset or pixels)."""
    if dtype not in _WALKED:
        raise ValueError(f"not an object type: {dtype!r}")
    keys, _ = _walk(conn, {dtype: ids})
    return {oid: found for (role, oid), found in keys.items() if role == dtype}


def collections_holding(conn, dtype, oid):
    """[(kind, id)] of the Projects and Screens that hold an object, sorted."""
    if dtype not in _WALKED:
        raise ValueError(f"not an object type: {dtype!r}")
    _, collections = _walk(conn, {dtype: [oid]})
    return sorted(collections.get((dtype, int(oid)), ()))
