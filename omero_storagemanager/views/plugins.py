"""The API behind the webclient plugins: the collection(s) a selected object belongs to
(right-hand panel) and where a collection's bytes lie (center panel).

The webclient lets users select Datasets, Images and Plates, which the app does not
manage by themselves: each is answered with the Project(s) or Screen(s) holding it.
"""
import re

from .. import settings
from ..catalog.collections import format_key
from ..catalog.objects import (OBJECT_TYPES, breakdown, holding_collections, object_row,
                               sharing_collections)
from ..catalog.paths import RepositoryPaths
from ..engine.sync import sync_collections
from ..models import Collection
from . import serialize
from .common import api, bad, json_body, not_found

MAX_OBJECTS = 20
_OBJECT = re.compile(r"^(project|screen|dataset|image|plate|well)-([0-9]{1,18})$")


def _collections_of(who, dtype, oid, learn=False):
    """(name, [visible Collection], number of holders, [keys not yet synced]) for an
    OMERO object. learn (a POST only): sync the holders the app does not know yet; a GET
    changes nothing and names them instead."""
    conn = who.catalog()
    found = object_row(conn, dtype, oid)
    if found is None:
        raise not_found(f"no {dtype} {oid} in OMERO")
    name, owner_id, group_id = found
    keys = holding_collections(conn, dtype, oid)
    if not keys:
        # In no collection: its name is for those who may see the object itself.
        if not who.access.can_see_owned(owner_id, group_id):
            raise not_found(f"no {dtype} {oid} that you may see")
        return name, [], 0, []

    def known():
        return {(c.kind, c.omero_id): c for c in Collection.objects.filter(
            omero_id__in=[oid for _, oid in keys]) if (c.kind, c.omero_id) in set(keys)}

    rows = known()
    if learn and len(rows) < len(keys):
        sync_collections(conn, keys=keys)  # created in OMERO since the last sync
        rows = known()
    visible = [rows[k] for k in keys if k in rows and who.access.can_see(rows[k])]
    unknown = [format_key(*k) for k in keys if k not in rows]
    if unknown and not visible and not who.access.can_see_owned(owner_id, group_id):
        unknown = []  # nothing to learn for this user: answered as not visible
    return name, visible, len(keys), unknown


@api(methods=("GET", "POST"))
def objects(request, who, dtype, oid):
    """GET: the object and the visible collections holding it; holders created in OMERO
    since the last sync are listed in "unknown". POST: the same, after learning those."""
    if dtype not in OBJECT_TYPES:
        raise bad(f"object type must be one of {', '.join(OBJECT_TYPES)}")
    if request.method == "POST":
        json_body(request)
    name, found, holders, unknown = _collections_of(who, dtype, oid,
                                                    learn=request.method == "POST")
    if holders and not found and not unknown:
        raise not_found(f"no {dtype} {oid} that you may see")
    details = [serialize.collection_detail(
        c, who.access, sharing_collections(who.catalog(), c.kind, c.omero_id)) for c in found]
    note = None
    if not holders:
        note = (f"This {dtype} is in no Project or Screen: the storage manager archives "
                "Projects and Screens.")
    elif dtype not in ("project", "screen") and found:
        note = (f"This {dtype} is stored as part of "
                + ", ".join(f"{c.get_kind_display()} {c.name!r}" for c in found) + ".")
    return {"object": {"type": dtype, "id": oid, "name": name}, "collections": details,
            "note": note, "unknown": unknown}


@api()
def breakdown_view(request, who):
    """Per Dataset or Plate sizes of the collections holding the selected objects."""
    raw = request.GET.get("objects", "")
    items = [part.strip() for part in raw.split(",") if part.strip()]
    if not items:
        raise bad("objects must list selected objects, e.g. objects=project-1,dataset-5")
    if len(items) > MAX_OBJECTS:
        raise bad(f"at most {MAX_OBJECTS} objects at once")
    chosen = {}
    for item in items:
        match = _OBJECT.match(item)
        if not match:
            shown = repr(item) if len(item) <= 60 else repr(item[:60]) + "..."
            raise bad(f"not an object: {shown} (write type-id, e.g. project-12)")
        _, found, holders, _ = _collections_of(who, match.group(1), int(match.group(2)))
        if holders and not found:
            raise not_found(f"no {item} that you may see")
        for c in found:
            chosen.setdefault(c.pk, c)
    paths = RepositoryPaths(settings.data_dir(), settings.managed_dir())
    answer = []
    for c in sorted(chosen.values(), key=lambda c: (c.kind, c.name, c.omero_id)):
        rows = breakdown(who.catalog(), paths, c.kind, c.omero_id, settings.INCLUDE_ATTACHMENTS)
        answer.append({"key": c.key, "name": c.name, "state": c.state, "files": c.files,
                       "bytes": c.bytes, "scanned": c.scanned_at, "children": rows})
    return {"collections": answer}
