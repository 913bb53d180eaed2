"""What changed in OMERO since the last catalogue, read from its own records.

OMERO's eventlog (docs/eventlog.md) has a row for every object its Hibernate listener
saw inserted, updated or deleted, plus REINDEX rows for objects whose annotations
changed. Two kinds of change have no row, and are found another way:

  - rows removed by a graph request (Delete2 deletes with bulk HQL, which the listener
    never sees): PostgreSQL's own per-table counter of deleted rows
    (pg_stat_user_tables.n_tup_del) moves, and any move means a full scan;
  - rows the admins pruned from eventlog before we read them: the oldest remaining row
    is newer than the last one we read.

A transaction still open when we read can commit rows with ids below the last one we
read: its transaction id is kept (`pending`) and its rows are read next time.
Everything here only reads, in single statements, on the catalog's read-only session.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from .reach import collections_reached

# The classes whose rows the catalogue's figures or names depend on, by table. Any
# other class (channels, rendering settings, ROIs, ...) changes nothing we count.
TABLES = {
    "ome.model.containers.Project": "project",
    "ome.model.screen.Screen": "screen",
    "ome.model.containers.Dataset": "dataset",
    "ome.model.screen.Plate": "plate",
    "ome.model.screen.Well": "well",
    "ome.model.screen.WellSample": "wellsample",
    "ome.model.core.Image": "image",
    "ome.model.core.Pixels": "pixels",
    "ome.model.display.Thumbnail": "thumbnail",
    "ome.model.core.PixelsOriginalFileMap": "pixelsoriginalfilemap",
    "ome.model.fs.Fileset": "fileset",
    "ome.model.fs.FilesetEntry": "filesetentry",
    "ome.model.fs.FilesetJobLink": "filesetjoblink",
    "ome.model.jobs.JobOriginalFileLink": "joboriginalfilelink",
    "ome.model.core.OriginalFile": "originalfile",
    "ome.model.containers.ProjectDatasetLink": "projectdatasetlink",
    "ome.model.containers.DatasetImageLink": "datasetimagelink",
    "ome.model.screen.ScreenPlateLink": "screenplatelink",
    "ome.model.annotations.FileAnnotation": "annotation",
    "ome.model.annotations.ProjectAnnotationLink": "projectannotationlink",
    "ome.model.annotations.DatasetAnnotationLink": "datasetannotationlink",
    "ome.model.annotations.ImageAnnotationLink": "imageannotationlink",
    "ome.model.annotations.ScreenAnnotationLink": "screenannotationlink",
    "ome.model.annotations.PlateAnnotationLink": "plateannotationlink",
    "ome.model.annotations.WellAnnotationLink": "wellannotationlink",
    "ome.model.meta.Experimenter": "experimenter",
    "ome.model.meta.ExperimenterGroup": "experimentergroup",
}
# Tables whose deleted rows change figures or names: their deletions are watched.
WATCHED = sorted(set(TABLES.values()))
# Rows of a transaction open at the last read are looked for this far below it: OMERO
# writes a transaction's eventlog rows at its end, just before it commits.
LATE_WINDOW = 10_000
_TXID_MOD = 1 << 32  # eventlog.xmin is a 32-bit transaction id

# What each changed row reaches: statements giving (role, id) pairs for the up walk
# (reach.collections_reached), from the rows' ids in %(ids)s. Roles are those of
# the walk ("file", "project", "screen", "dataset", "plate", "well", "image", "fileset",
# "pixels"); an image also stands for its fileset, whose other images' collections
# share its bytes.
_IMAGE = "SELECT 'image', x.id FROM image x WHERE x.id IN ({ids}) UNION ALL " \
         "SELECT 'fileset', x.fileset FROM image x WHERE x.id IN ({ids}) AND x.fileset IS NOT NULL"
_REACH = {
    "project": "SELECT 'project', x FROM unnest(%(ids)s::bigint[]) x",
    "screen": "SELECT 'screen', x FROM unnest(%(ids)s::bigint[]) x",
    "dataset": "SELECT 'dataset', x FROM unnest(%(ids)s::bigint[]) x",
    "plate": "SELECT 'plate', x FROM unnest(%(ids)s::bigint[]) x",
    "well": "SELECT 'well', x FROM unnest(%(ids)s::bigint[]) x",
    "image": _IMAGE.format(ids="SELECT unnest(%(ids)s::bigint[])"),
    "pixels": "SELECT 'image', p.image FROM pixels p WHERE p.id = ANY(%(ids)s)",
    "fileset": "SELECT 'fileset', x FROM unnest(%(ids)s::bigint[]) x",
    "originalfile": "SELECT 'file', x FROM unnest(%(ids)s::bigint[]) x",
    "thumbnail": "SELECT 'image', p.image FROM thumbnail t JOIN pixels p ON p.id = t.pixels"
                 " WHERE t.id = ANY(%(ids)s)",
    "pixelsoriginalfilemap": "SELECT 'pixels', m.child FROM pixelsoriginalfilemap m"
                             " WHERE m.id = ANY(%(ids)s) UNION ALL SELECT 'file', m.parent"
                             " FROM pixelsoriginalfilemap m WHERE m.id = ANY(%(ids)s)",
    "filesetentry": "SELECT 'fileset', e.fileset FROM filesetentry e WHERE e.id = ANY(%(ids)s)",
    "filesetjoblink": "SELECT 'fileset', l.parent FROM filesetjoblink l WHERE l.id = ANY(%(ids)s)",
    # The link adds its file to the filesets of its job (the file's other paths are
    # as they were).
    "joboriginalfilelink": "SELECT 'fileset', fjl.parent FROM joboriginalfilelink l"
                           " JOIN filesetjoblink fjl ON fjl.child = l.parent"
                           " WHERE l.id = ANY(%(ids)s)",
    # A link moves its child: "moved <type>" (reach.collections_reached) also reaches
    # the collections sharing what the child holds.
    "projectdatasetlink": "SELECT 'project', l.parent FROM projectdatasetlink l"
                          " WHERE l.id = ANY(%(ids)s) UNION ALL SELECT 'moved dataset',"
                          " l.child FROM projectdatasetlink l WHERE l.id = ANY(%(ids)s)",
    "datasetimagelink": "SELECT 'dataset', l.parent FROM datasetimagelink l"
                        " WHERE l.id = ANY(%(ids)s) UNION ALL SELECT 'moved image', l.child"
                        " FROM datasetimagelink l WHERE l.id = ANY(%(ids)s)",
    "screenplatelink": "SELECT 'screen', l.parent FROM screenplatelink l"
                       " WHERE l.id = ANY(%(ids)s) UNION ALL SELECT 'moved plate', l.child"
                       " FROM screenplatelink l WHERE l.id = ANY(%(ids)s)",
    "wellsample": "SELECT 'well', s.well FROM wellsample s WHERE s.id = ANY(%(ids)s)"
                  " UNION ALL SELECT 'moved image', s.image FROM wellsample s"
                  " WHERE s.id = ANY(%(ids)s)",
    # An attachment's file: the walk follows it to every object it is linked to.
    "annotation": "SELECT 'file', a.\"file\" FROM annotation a"
                  " WHERE a.id = ANY(%(ids)s) AND a.\"file\" IS NOT NULL",
    # Owners and groups: their collections' names (owner_name, group_name) follow.
    "experimenter": "SELECT 'project', p.id FROM project p WHERE p.owner_id = ANY(%(ids)s)"
                    " UNION ALL SELECT 'screen', s.id FROM screen s"
                    " WHERE s.owner_id = ANY(%(ids)s)",
    "experimentergroup": "SELECT 'project', p.id FROM project p WHERE p.group_id = ANY(%(ids)s)"
                         " UNION ALL SELECT 'screen', s.id FROM screen s"
                         " WHERE s.group_id = ANY(%(ids)s)",
}
for _otype in ("project", "dataset", "image", "screen", "plate", "well"):
    # A link's object, and its annotation's file (held elsewhere too, maybe).
    _parent = (_IMAGE.format(ids=f"SELECT l.parent FROM {_otype}annotationlink l"
                                 " WHERE l.id = ANY(%(ids)s)") if _otype == "image" else
               f"SELECT '{_otype}', l.parent FROM {_otype}annotationlink l"
               " WHERE l.id = ANY(%(ids)s)")
    _REACH[f"{_otype}annotationlink"] = (
        _parent + f" UNION ALL SELECT 'file', a.\"file\" FROM {_otype}annotationlink l"
        " JOIN annotation a ON a.id = l.child WHERE l.id = ANY(%(ids)s)"
        " AND a.\"file\" IS NOT NULL")


@dataclass
class LogState:
    """What the database says now: eventlog's bounds, open transactions, deletions."""

    oldest: Optional[int]
    newest: Optional[int]
    pending: List[int]  # transaction ids open at this moment (64-bit, txid_* form)
    deletions: Dict[str, int]  # table -> rows ever deleted (pg_stat_user_tables)


@dataclass
class Changes:
    rows: int = 0  # eventlog rows read
    late: int = 0  # of which committed by a transaction open at the last read
    by_table: Dict[str, Set[int]] = field(default_factory=lambda: defaultdict(set))
    deletes: List[Tuple[str, int]] = field(default_factory=list)  # logged DELETE rows
    # by_table's rows with an UPDATE or REINDEX row too (the rest were only inserted)
    updated: Dict[str, Set[int]] = field(default_factory=lambda: defaultdict(set))
    unknown_pending: bool = False  # a transaction open last time is beyond knowing


def read_state(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT (SELECT min(id) FROM eventlog), (SELECT max(id) FROM eventlog),"
                    " ARRAY(SELECT txid_snapshot_xip(txid_current_snapshot()))")
        oldest, newest, pending = cur.fetchone()
        cur.execute("SELECT c.relname, coalesce(s.n_tup_del, 0)"
                    " FROM unnest(%s::text[]) t JOIN pg_class c ON c.oid = to_regclass(t)"
                    " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid", [WATCHED])
        deletions = {name: int(n) for name, n in cur.fetchall()}
    return LogState(oldest, newest, sorted(int(x) for x in pending), deletions)


def why_full(last_id, deletions, state):
    """Why the changes since `last_id` cannot be read from eventlog alone (a sentence),
    or None when they can. deletions: the counters stored with last_id."""
    if last_id is None:
        return "no catalogue has been made yet"
    moved = sorted(t for t, n in state.deletions.items() if n > deletions.get(t, 0))
    if moved:
        return ("rows were deleted from " + ", ".join(moved)
                + " (OMERO logs no DELETE rows for graph deletes)")
    if any(n < deletions.get(t, 0) for t, n in state.deletions.items()):
        return "PostgreSQL's table statistics were reset: deletions cannot be ruled out"
    if state.oldest is None and last_id > 0:
        return f"eventlog is empty: the rows after id {last_id} were pruned"
    if state.oldest is not None and state.oldest > last_id:
        return (f"eventlog rows after id {last_id} were pruned (the oldest left is "
                f"{state.oldest})")
    return None


def fileset_figures_hold(last_id, deletions, state):
    """Whether fileset figures known at `last_id` can be kept up to date from eventlog:
    its rows since are all there, and no row of the tables those figures are summed
    from (FILESET_TABLES) was deleted. deletions: the counters stored with last_id."""
    if last_id is None or (state.oldest is None and last_id > 0):
        return False
    if state.oldest is not None and state.oldest > last_id:
        return False
    if any(n < deletions.get(t, 0) for t, n in state.deletions.items()):
        return False  # statistics reset
    return all(state.deletions.get(t, 0) == deletions.get(t, 0) for t in FILESET_TABLES)


def read_changes(conn, last_id, upto, pending):
    """The relevant eventlog rows with last_id < id <= upto, and those of `pending`
    transactions (open at the last read) that have committed since, below last_id."""
    changes = Changes()
    with conn.cursor() as cur:
        late = []
        if pending:
            cur.execute("SELECT x, txid_status(x) FROM unnest(%s::bigint[]) x", [pending])
            for xid, status in cur.fetchall():
                if status is None:
                    changes.unknown_pending = True
                elif status == "committed":
                    late.append(xid % _TXID_MOD)
        cur.execute(
            "SELECT id, action, entitytype, entityid, id <= %(last)s FROM eventlog"
            " WHERE entitytype = ANY(%(types)s) AND ((id > %(last)s AND id <= %(upto)s)"
            "  OR (id > %(floor)s AND id <= %(last)s AND xmin::text::bigint = ANY(%(late)s)))"
            " ORDER BY id",
            {"last": last_id, "upto": upto if upto is not None else last_id,
             "floor": last_id - LATE_WINDOW, "late": late, "types": list(TABLES)})
        for _id, action, etype, oid, was_late in cur:
            changes.rows += 1
            changes.late += bool(was_late)
            table = TABLES[etype]
            if action == "DELETE":
                changes.deletes.append((table, oid))
            else:  # INSERT, UPDATE, REINDEX: the row is there to be read
                changes.by_table[table].add(oid)
                if action != "INSERT":
                    changes.updated[table].add(oid)
    return changes


# A file, image or fileset only just inserted is held by nothing that is not new too:
# whatever links it into a collection (a fileset entry, a link to a dataset or well, an
# image pointing at the fileset, an annotation) was inserted after it, or updated to
# point at it, and is read in this batch or, committed later, in a later one, and walks
# up itself. So such objects are not walked up, as rows of their own tables or as what
# their new entries, thumbnails and import logs belong to: an import of a thousand
# files spared walking up each file, image and fileset (rows of links are walked).
_REACHED_THROUGH_NEW_ROWS = ("originalfile",)
_NEW_OBJECTS = {"image": "image", "fileset": "fileset"}  # table: role in the walk

# The filesets whose figures (catalog.totals.FILESET_FIGURES) a change can alter: new or
# updated filesets, entries, import-log links, and the filesets of changed files.
_DIRTY_FILESETS = """
SELECT unnest(%(fileset)s::bigint[])
UNION SELECT fileset FROM filesetentry WHERE id = ANY(%(filesetentry)s::bigint[])
UNION SELECT parent FROM filesetjoblink WHERE id = ANY(%(filesetjoblink)s::bigint[])
UNION SELECT fjl.parent FROM joboriginalfilelink jol
        JOIN filesetjoblink fjl ON fjl.child = jol.parent
       WHERE jol.id = ANY(%(joboriginalfilelink)s::bigint[])
UNION SELECT fjl.parent FROM joboriginalfilelink jol
        JOIN filesetjoblink fjl ON fjl.child = jol.parent
       WHERE jol.child = ANY(%(originalfile)s::bigint[])
UNION SELECT fileset FROM filesetentry WHERE originalfile = ANY(%(originalfile)s::bigint[])
"""
FILESET_TABLES = ("fileset", "filesetentry", "filesetjoblink", "joboriginalfilelink",
                   "originalfile")


def dirty_filesets(conn, changes):
    """{fileset id} of the filesets whose own figures the `changes` may have altered
    (engine/filesetcache.py drops what it kept of them). A file only inserted is in a
    fileset only through an entry or link inserted with or after it, which makes its
    fileset dirty itself (as for the walk up, _REACHED_THROUGH_NEW_ROWS)."""
    params = {t: sorted(changes.by_table.get(t, ())) for t in FILESET_TABLES}
    for table in _REACHED_THROUGH_NEW_ROWS:
        params[table] = sorted(changes.updated.get(table, ()))
    if not any(params.values()):
        return set()
    with conn.cursor() as cur:
        cur.execute(_DIRTY_FILESETS, params)
        return {int(r[0]) for r in cur.fetchall() if r[0] is not None}


def reached(conn, changes):
    """{(kind, id)} of the Projects and Screens whose figures or names a change can
    alter: each changed row's objects, walked up to every collection holding them."""
    asked, moved = defaultdict(set), defaultdict(set)
    new = {role: changes.by_table.get(t, set()) - changes.updated.get(t, set())
           for t, role in _NEW_OBJECTS.items()}
    # One statement for every table (a round trip each cost more than its lookups on a
    # busy machine): each table's part with its own array of ids.
    parts, params = [], {}
    for table, ids in sorted(changes.by_table.items()):
        if table in _REACHED_THROUGH_NEW_ROWS or table in _NEW_OBJECTS:
            ids = set(ids) - new.get(_NEW_OBJECTS.get(table), set())
            if table in _REACHED_THROUGH_NEW_ROWS:
                ids = changes.updated.get(table)
            if not ids:
                continue
        parts.append("(" + _REACH[table].replace("%(ids)s", f"%(ids_{table})s") + ")")
        params[f"ids_{table}"] = sorted(ids)
    if parts:
        with conn.cursor() as cur:
            cur.execute("\nUNION ALL\n".join(parts), params)
            for role, oid in cur.fetchall():
                if oid is None:
                    continue
                if role.startswith("moved "):
                    moved[role[len("moved "):]].add(int(oid))
                elif int(oid) not in new.get(role, ()):
                    asked[role].add(int(oid))
    for role, ids in moved.items():
        asked[role] |= ids
    return collections_reached(conn, asked, moved)
