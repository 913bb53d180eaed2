"""The API behind the webclient plugins: the collection(s) a selected object belongs to
(right-hand panel) and where a collection's bytes lie (center panel).

The webclient lets users select Datasets, Images and Plates, which the app does not
manage by themselves: each is answered with the Project(s) or Screen(s) holding it.
"""
import re

from .. import settings
from ..catalog.objects import (OBJECT_TYPES, breakdown, holding_collections, object_name,
                               sharing_collections)
from ..catalog.paths import RepositoryPaths
from ..engine.sync import sync_collections
from ..models import Collection
from . import serialize
from .common import api, bad, not_found

MAX_OBJECTS = 20
_OBJECT = re.compile(r"^(project|screen|dataset|image|plate|well)-(\d{1,18})$")


def _collections_of(who, dtype, oid):
    """(name, [Collection]) for an OMERO object: the visible collections holding it."""
    conn = who.catalog()
    name = object_name(conn, dtype, oid)
    if name is None:
        raise not_found(f"no {dtype} {oid} in OMERO")
    keys = holding_collections(conn, dtype, oid)
    if not keys:
        return name, [], 0
    known = {(c.kind, c.omero_id): c for c in Collection.objects.filter(
        omero_id__in=[oid for _, oid in keys]) if (c.kind, c.omero_id) in set(keys)}
    if len(known) < len(keys):
        # Created in OMERO since the last sync: the app learns of it now.
        sync_collections(conn, keys=keys)
        known = {(c.kind, c.omero_id): c for c in Collection.objects.filter(
            omero_id__in=[oid for _, oid in keys]) if (c.kind, c.omero_id) in set(keys)}
    visible = [known[k] for k in keys if k in known and who.access.can_see(known[k])]
    return name, visible, len(keys)


@api()
def objects(request, who, dtype, oid):
    if dtype not in OBJECT_TYPES:
        raise bad(f"object type must be one of {', '.join(OBJECT_TYPES)}")
    name, found, holders = _collections_of(who, dtype, oid)
    if holders and not found:
        raise not_found(f"no {dtype} {oid} that you may see")
    details = [serialize.collection_detail(
        c, who.access, sharing_collections(who.catalog(), c.kind, c.omero_id)) for c in found]
    note = None
    if not holders:
        note = (f"This {dtype} is in no Project or Screen: the storage manager archives "
                "Projects and Screens.")
    elif dtype not in ("project", "screen"):
        note = (f"This {dtype} is stored as part of "
                + ", ".join(f"{c.get_kind_display()} {c.name!r}" for c in found) + ".")
    return {"object": {"type": dtype, "id": oid, "name": name}, "collections": details,
            "note": note}


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
        _, found, holders = _collections_of(who, match.group(1), int(match.group(2)))
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
