"""Each fileset's figures, kept between catalogue refreshes (the FilesetFigures table).

Summing a fileset's files is most of what recomputing a collection costs: a collection
reached by a change holds tens of filesets and hundreds of files, of which a change
touches a few. So a catalog scan of everything keeps the figures of every fileset it
summed (replace_all), and an incremental refresh re-reads from OMERO only the filesets
eventlog says may have changed (`dirty`: catalog.eventlog.dirty_filesets) and those
not kept yet, and takes the rest from here (figures_for).

Why the kept figures stay right: a fileset's figures change only through rows of
fileset, filesetentry, filesetjoblink, joboriginalfilelink and originalfile. A new or
updated row of those is in eventlog and makes its fileset dirty; a deleted one moves
PostgreSQL's deletion counter of its table, and the next refresh is then a full scan,
which replaces every row. The rows are written in the same transaction as the
collections' figures and the eventlog cursor, so a worker killed half way leaves the
changes to be read again, and the dirty filesets to be dropped again.
"""
import csv
import io

from django.db import connection

from ..catalog.collections import as_utc
from ..models import FilesetFigures

_TABLE = FilesetFigures._meta.db_table


def replace_all(per_fileset):
    """Keep `per_fileset` ({fileset id: (files, bytes, newest, unhashed)}, as
    catalog.totals.fileset_figures gives it) as the figures of every fileset, in place
    of what was kept. Call inside the transaction that stores the scan."""
    rows = io.StringIO()
    write = csv.writer(rows).writerow
    for fileset, (files, nbytes, newest, unhashed) in per_fileset.items():
        write((fileset, files, nbytes, _iso(newest), unhashed))
    rows.seek(0)
    with connection.cursor() as cur:
        # TRUNCATE: a DELETE of every row took longer than the COPY. Only the catalogue
        # refresh reads the table, one at a time (tasks/schedules.py).
        cur.execute(f"TRUNCATE {_TABLE}")
        cur.cursor.copy_expert(f"COPY {_TABLE} (fileset_id, files, bytes, newest, unhashed)"
                               " FROM STDIN WITH (FORMAT csv)", rows)


def figures_for(filesets, dirty, compute):
    """{fileset id: (files, bytes, newest, unhashed)} of `filesets`: the kept figures of
    those not in `dirty`, and compute(ids) (read from OMERO) for the rest. Returns the
    figures and the rows to keep (for keep())."""
    wanted = set(filesets)
    found = {}
    clean = sorted(wanted - set(dirty))
    if clean:
        with connection.cursor() as cur:
            cur.execute(f"SELECT fileset_id, files, bytes, newest, unhashed FROM {_TABLE}"
                        " WHERE fileset_id = ANY(%s)", [clean])
            found = {row[0]: (row[1], row[2], row[3], row[4]) for row in cur.fetchall()}
    missing = sorted(wanted - set(found))
    # Aware times throughout: kept ones come back aware, OMERO's are naive (UTC).
    computed = {f: (n, b, as_utc(t), u) for f, (n, b, t, u) in
                (compute(missing) if missing else {}).items()}
    found.update(computed)
    return found, computed


def keep(dirty, computed):
    """Drop the kept figures of the `dirty` filesets (read or not: a fileset no reached
    collection holds now may be linked into one later) and keep those `computed`. Call
    inside the transaction that stores the refresh and moves the eventlog cursor."""
    with connection.cursor() as cur:
        if dirty:
            cur.execute(f"DELETE FROM {_TABLE} WHERE fileset_id = ANY(%s)", [sorted(dirty)])
        if computed:
            ids = sorted(computed)
            cur.execute(
                f"INSERT INTO {_TABLE} (fileset_id, files, bytes, newest, unhashed)"
                " SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[],"
                " %s::timestamptz[], %s::bigint[])"
                " ON CONFLICT (fileset_id) DO UPDATE SET files = excluded.files,"
                " bytes = excluded.bytes, newest = excluded.newest,"
                " unhashed = excluded.unhashed",
                [ids, [computed[i][0] for i in ids], [computed[i][1] for i in ids],
                 [computed[i][2] for i in ids], [computed[i][3] for i in ids]])


def _iso(value):
    value = as_utc(value)
    return value.isoformat() if value is not None else None
