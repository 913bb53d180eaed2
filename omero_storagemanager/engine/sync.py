"""Sync: the app knows every Project and Screen of OMERO, with its current name and owner.

New ones appear, renamed or moved ones follow, deleted ones are marked gone: their rows
stay, because their copies and history must remain findable.
"""
from dataclasses import dataclass, field
from typing import List

from django.db import transaction

from ..catalog.collections import list_collections
from ..models import Collection

_FOLLOWED = ("name", "owner_id", "owner_name", "group_id", "group_name", "created")


@dataclass
class SyncReport:
    total: int = 0
    added: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    gone: List[str] = field(default_factory=list)
    back: List[str] = field(default_factory=list)


def sync_collections(conn, keys=None):
    """Bring Collection rows in line with OMERO; `keys`: only these (kind, id) pairs."""
    rows = list_collections(conn, ids=keys)
    report = SyncReport(total=len(rows))
    existing = Collection.objects.all()
    if keys is not None:
        wanted = set(keys)
        existing = [c for c in existing.filter(omero_id__in={oid for _, oid in keys})
                    if (c.kind, c.omero_id) in wanted]
    known = {(c.kind, c.omero_id): c for c in existing}
    new, changed = [], []
    for row in rows:
        current = known.pop((row.kind, row.id), None)
        values = dict(name=row.name, owner_id=row.owner_id, owner_name=row.owner_name,
                      group_id=row.group_id, group_name=row.group_name, created=row.created)
        if current is None:
            new.append(Collection(kind=row.kind, omero_id=row.id, **values))
            report.added.append(row.key)
            continue
        if current.gone:
            current.gone = False
            report.back.append(row.key)
        if any(getattr(current, k) != v for k, v in values.items()) or row.key in report.back:
            for k, v in values.items():
                setattr(current, k, v)
            changed.append(current)
            report.changed.append(row.key)
    vanished = [c for c in known.values() if not c.gone]
    for c in vanished:
        c.gone = True
        report.gone.append(c.key)
    with transaction.atomic():
        Collection.objects.bulk_create(new, batch_size=2000)
        Collection.objects.bulk_update(changed, list(_FOLLOWED) + ["gone"], batch_size=500)
        Collection.objects.filter(pk__in=[c.pk for c in vanished]).update(gone=True)
    return report
