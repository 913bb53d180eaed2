"""OMERO objects below Projects and Screens: which collection(s) hold a Dataset, Image,
Plate or Well (membership.py answers), what a container is called, and where a
collection's bytes lie (per Dataset or Plate). Read only, parametrised SQL; table names
come from fixed maps here, never from input.
"""
from collections import defaultdict

from .collections import format_key
from .membership import (FILESETS_OF, collections_holding, holders,
                         is_collection_key)
from .inventory import ATTACHMENT, FILESET_ENTRY, IMPORT_LOG, InventoryReader

# Object types the webclient selects, and the collection kinds above each one.
OBJECT_TYPES = ("project", "screen", "dataset", "image", "plate", "well")

_NAME = {
    "project": "SELECT name FROM project WHERE id = %(id)s",
    "screen": "SELECT name FROM screen WHERE id = %(id)s",
    "dataset": "SELECT name FROM dataset WHERE id = %(id)s",
    "image": "SELECT name FROM image WHERE id = %(id)s",
    "plate": "SELECT name FROM plate WHERE id = %(id)s",
    "well": """SELECT p.name || ' ' || chr(65 + w."row") || (w."column" + 1)::text
                 FROM well w JOIN plate p ON p.id = w.plate WHERE w.id = %(id)s""",
}
# Children (Datasets of a Project, Plates of a Screen) with their images.
_CHILDREN = {
    "project": """
        SELECT d.id, d.name, dil.child FROM projectdatasetlink pdl
          JOIN dataset d ON d.id = pdl.child
          LEFT JOIN datasetimagelink dil ON dil.parent = d.id
         WHERE pdl.parent = %(id)s""",
    "screen": """
        SELECT p.id, p.name, ws.image FROM screenplatelink spl
          JOIN plate p ON p.id = spl.child
          LEFT JOIN well w ON w.plate = p.id LEFT JOIN wellsample ws ON ws.well = w.id
         WHERE spl.parent = %(id)s""",
}


def _check(dtype):
    if dtype not in OBJECT_TYPES:
        raise ValueError(f"not an object type: {dtype!r} (one of {', '.join(OBJECT_TYPES)})")


def object_name(conn, dtype, oid):
    """The object's name, or None when it does not exist."""
    _check(dtype)
    with conn.cursor() as cur:
        cur.execute(_NAME[dtype], {"id": int(oid)})
        row = cur.fetchone()
    return None if row is None else row[0]


_OWNED = {
    "project": "SELECT name, owner_id, group_id FROM project WHERE id = %(id)s",
    "screen": "SELECT name, owner_id, group_id FROM screen WHERE id = %(id)s",
    "dataset": "SELECT name, owner_id, group_id FROM dataset WHERE id = %(id)s",
    "image": "SELECT name, owner_id, group_id FROM image WHERE id = %(id)s",
    "plate": "SELECT name, owner_id, group_id FROM plate WHERE id = %(id)s",
    "well": """SELECT p.name || ' ' || chr(65 + w."row") || (w."column" + 1)::text,
                      w.owner_id, w.group_id
                 FROM well w JOIN plate p ON p.id = w.plate WHERE w.id = %(id)s""",
}


def object_row(conn, dtype, oid):
    """(name, owner id, group id) of the object, or None when it does not exist: who may
    see an object in no collection is decided from its owner and group."""
    _check(dtype)
    with conn.cursor() as cur:
        cur.execute(_OWNED[dtype], {"id": int(oid)})
        row = cur.fetchone()
    return None if row is None else tuple(row)


def holding_collections(conn, dtype, oid):
    """[(kind, id)] of the Projects or Screens that hold the object, sorted."""
    _check(dtype)
    return collections_holding(conn, dtype, int(oid))


def sharing_collections(conn, kind, cid):
    """Keys ("Project:7") of the other collections holding a fileset of this one (only
    collections: the views name them from the app's Collection rows)."""
    if kind not in FILESETS_OF:
        raise ValueError(f"not a collection kind: {kind!r}")
    with conn.cursor() as cur:
        cur.execute(FILESETS_OF[kind], {"cid": int(cid)})
        filesets = [r[0] for r in cur.fetchall()]
    found = set().union(*holders(conn, fileset_ids=filesets).filesets.values())
    return sorted({k for k in found if is_collection_key(k)} - {format_key(kind, int(cid))})


def breakdown(conn, paths, kind, cid, include_attachments=True):
    """Where a collection's files lie: one row per Dataset (Project) or Plate (Screen),
    each {"type", "id", "name", "images", "files", "bytes"}, sizes as OMERO records them.

    A file used by images of several children is counted in each of them (the rows may
    add up to more than the collection); attachments on the collection itself, and
    files of no child, come in a last row of type "other".
    """
    if kind not in _CHILDREN:
        raise ValueError(f"not a collection kind: {kind!r}")
    inventory = InventoryReader(conn, paths, include_attachments).read(kind, cid)
    child_type = "dataset" if kind == "project" else "plate"
    names, images_of = {}, defaultdict(set)
    with conn.cursor() as cur:
        cur.execute(_CHILDREN[kind], {"id": int(cid)})
        for child, name, image in cur.fetchall():
            names[child] = name
            if image is not None:
                images_of[child].add(image)
        cur.execute("SELECT i.id, i.fileset, p.id FROM image i"
                    " LEFT JOIN pixels p ON p.image = i.id WHERE i.id = ANY(%s)",
                    [inventory.image_ids])
        image_rows = cur.fetchall()
    children_of_image = defaultdict(set)
    for child, images in images_of.items():
        for image in images:
            children_of_image[image].add(child)
    by_fileset, by_pixels = defaultdict(set), {}
    for image, fileset, pixels in image_rows:
        if fileset is not None:
            by_fileset[fileset].update(children_of_image[image])
        if pixels is not None:
            by_pixels[pixels] = children_of_image[image]
    totals = defaultdict(lambda: [0, 0])
    for record in inventory.files:
        if record.kind in (FILESET_ENTRY, IMPORT_LOG):
            holders = by_fileset.get(record.fileset_id, set())
        elif record.kind == ATTACHMENT:
            holders = set()
        else:
            holders = by_pixels.get(record.pixels_id, set())
        for holder in holders or {None}:
            totals[holder][0] += 1
            totals[holder][1] += record.size or 0
    rows = [{"type": child_type, "id": child, "name": names[child],
             "images": len(images_of[child]), "files": totals[child][0],
             "bytes": totals[child][1]} for child in sorted(names, key=lambda c: (names[c], c))]
    if None in totals:
        rows.append({"type": "other", "id": None, "name": "Attachments and other files",
                     "images": 0, "files": totals[None][0], "bytes": totals[None][1]})
    return rows
