"""What the incremental catalogue's tests share: connections to a generated facility,
and the comparison of the app's catalogue with a full scan's figures, collection by
collection."""
import psycopg2

from omero_storagemanager.catalog.collections import list_collections
from omero_storagemanager.catalog.totals import Figures, collection_figures
from omero_storagemanager.models import Collection, ScanResult

# The figures a catalog scan stores on Collection, and those only its ScanResult keeps.
ON_COLLECTION = ("files", "bytes", "images", "shared_bytes", "newest_file")
IN_RESULT = ("unhashed_files", "shared_filesets", "thumbnails")
NAMES = ("name", "owner_id", "owner_name", "group_id", "group_name")


def reader(facility):
    conn = psycopg2.connect(facility.dsn)
    conn.set_session(readonly=True, autocommit=True)
    return conn


def catalogue_differences(conn):
    """Every difference between the app's catalogue and a full scan's figures (and
    OMERO's names and owners) now, as readable lines; [] when they agree."""
    full = collection_figures(conn)
    omero = {(c.kind, c.id): c for c in list_collections(conn)}
    latest = {}
    for cid, figures in ScanResult.objects.order_by("collection_id", "-id").values_list(
            "collection_id", "figures"):
        latest.setdefault(cid, figures)
    found = []
    live = Collection.objects.filter(gone=False)
    if {(c.kind, c.omero_id) for c in live} != set(omero):
        found.append(f"collections: app {sorted((c.kind, c.omero_id) for c in live)}"
                     f" != OMERO {sorted(omero)}")
    for c in live:
        want = full.get((c.kind, c.omero_id)) or Figures()
        row = omero.get((c.kind, c.omero_id))
        for name in ON_COLLECTION:
            if getattr(c, name) != getattr(want, name):
                found.append(f"{c.key} {name}: {getattr(c, name)!r} != {getattr(want, name)!r}")
        for name in IN_RESULT:
            have = latest.get(c.pk, {}).get(name)
            if have != getattr(want, name):
                found.append(f"{c.key} {name}: {have!r} != {getattr(want, name)!r}")
        for name in NAMES if row is not None else ():
            if getattr(c, name) != getattr(row, name):
                found.append(f"{c.key} {name}: {getattr(c, name)!r} != {getattr(row, name)!r}")
    return found


def kept_fileset_differences(conn):
    """Every fileset whose figures the catalogue keeps (FilesetFigures) and which differ
    from OMERO's now, as readable lines; [] when every kept row is right. A fileset not
    kept is fine (it is read when needed); a stale one would be counted wrong."""
    from omero_storagemanager.catalog.collections import as_utc
    from omero_storagemanager.catalog.totals import fileset_figures
    from omero_storagemanager.models import FilesetFigures

    now = {f: (n, b, as_utc(t), u) for f, (n, b, t, u) in fileset_figures(conn).items()}
    found = []
    for row in FilesetFigures.objects.order_by("fileset_id"):
        kept = (row.files, row.bytes, row.newest, row.unhashed)
        if kept != now.get(row.fileset_id):
            found.append(f"fileset {row.fileset_id}: kept {kept} != {now.get(row.fileset_id)}")
    return found
