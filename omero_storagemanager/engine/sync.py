"""Sync: the app knows every Project and Screen of OMERO, with its current name and owner.

New ones appear, renamed or moved ones follow, deleted ones are marked gone: their rows
stay, because their copies and history must remain findable. A collection that purge
moved to the archive user and group keeps its original owner and group here.
"""
from dataclasses import dataclass, field
from typing import List

from django.db import transaction

from ..catalog.collections import format_key, list_collections
from ..models import Collection

_FOLLOWED = ("name", "owner_id", "owner_name", "group_id", "group_name", "created")
# While purge has moved a collection to the archive user and group (original_owner_id
# set), its row keeps the owner and group it had: they still see it, request its
# restore and count it; restore moves it back and clears the mark (issue 20).
_KEPT_WHILE_MOVED = ("owner_id", "owner_name", "group_id", "group_name")


@dataclass
class SyncReport:
    total: int = 0
    added: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    gone: List[str] = field(default_factory=list)
    back: List[str] = field(default_factory=list)


def sync_collections(conn, keys=None):
    """Bring Collection rows in line with OMERO; `keys`: only these (kind, id) pairs.

    The app's side is read as plain tuples and compared as tuples: a scan of everything
    syncs ten thousand collections, nearly all unchanged, and model instances for them
    all cost more than the comparison. Only new, changed and vanished rows are written.
    """
    rows = list_collections(conn, ids=keys)
    report = SyncReport(total=len(rows))
    existing = Collection.objects.all()
    if keys is not None:
        existing = existing.filter(omero_id__in={oid for _, oid in keys})
    # (kind, omero_id) -> (pk, gone, followed values in _FOLLOWED order)
    known = {(kind, oid): (pk, gone, tuple(values), moved is not None)
             for pk, kind, oid, gone, moved, *values in existing.values_list(
                 "pk", "kind", "omero_id", "gone", "original_owner_id", *_FOLLOWED)}
    if keys is not None:
        wanted = set(keys)
        known = {k: v for k, v in known.items() if k in wanted}
    new, changed = [], []
    for row in rows:
        values = tuple(getattr(row, name) for name in _FOLLOWED)  # CollectionRow's names
        current = known.pop((row.kind, row.id), None)
        if current is None:
            new.append(Collection(kind=row.kind, omero_id=row.id, **dict(zip(_FOLLOWED, values))))
            report.added.append(row.key)
            continue
        pk, gone, stored, moved = current
        if moved:
            values = tuple(stored[i] if name in _KEPT_WHILE_MOVED else value
                           for i, (name, value) in enumerate(zip(_FOLLOWED, values)))
        if gone:
            report.back.append(row.key)
        if gone or stored != values:
            # bulk_update writes only the fields it is given: the rest of this
            # instance (figures, state) is never read nor written.
            changed.append(Collection(pk=pk, kind=row.kind, omero_id=row.id, gone=False,
                                      **dict(zip(_FOLLOWED, values))))
            report.changed.append(row.key)
    vanished = [pk for pk, gone, _, _ in known.values() if not gone]
    report.gone.extend(format_key(kind, oid) for (kind, oid), (_, gone, _, _) in known.items()
                       if not gone)
    if new or changed or vanished:
        with transaction.atomic():
            Collection.objects.bulk_create(new, batch_size=2000)
            Collection.objects.bulk_update(changed, list(_FOLLOWED) + ["gone"], batch_size=500)
            Collection.objects.filter(pk__in=vanished).update(gone=True)
    return report
