"""The test bed's eventlog rows, written the way OMERO writes them (docs/eventlog.md).

OMERO's Hibernate listener (ome.security.basic.EventLogListener) adds one row per
inserted, updated or deleted model object: action INSERT/UPDATE/DELETE, entityType the
Java class name, entityId, and the event of the change; CurrentDetails.addLog skips only
Event and EventLog themselves. Graph requests that change rows in bulk (HQL) bypass the
listener: Chgrp2 publishes UPDATE/DELETE rows itself, Delete2 publishes none. The
generator logs what it creates (log_inserts); testbed.changes logs what it changes.
"""

# table -> the model class OMERO logs for its rows (annotation and job: see _TYPE_SQL).
ENTITY_TYPES = {
    "project": "ome.model.containers.Project",
    "dataset": "ome.model.containers.Dataset",
    "projectdatasetlink": "ome.model.containers.ProjectDatasetLink",
    "datasetimagelink": "ome.model.containers.DatasetImageLink",
    "image": "ome.model.core.Image",
    "pixels": "ome.model.core.Pixels",
    "originalfile": "ome.model.core.OriginalFile",
    "pixelsoriginalfilemap": "ome.model.core.PixelsOriginalFileMap",
    "thumbnail": "ome.model.display.Thumbnail",
    "fileset": "ome.model.fs.Fileset",
    "filesetentry": "ome.model.fs.FilesetEntry",
    "filesetjoblink": "ome.model.fs.FilesetJobLink",
    "job": "ome.model.jobs.Job",
    "joboriginalfilelink": "ome.model.jobs.JobOriginalFileLink",
    "screen": "ome.model.screen.Screen",
    "plate": "ome.model.screen.Plate",
    "screenplatelink": "ome.model.screen.ScreenPlateLink",
    "well": "ome.model.screen.Well",
    "wellsample": "ome.model.screen.WellSample",
    "annotation": "ome.model.annotations.Annotation",
    "projectannotationlink": "ome.model.annotations.ProjectAnnotationLink",
    "datasetannotationlink": "ome.model.annotations.DatasetAnnotationLink",
    "imageannotationlink": "ome.model.annotations.ImageAnnotationLink",
    "screenannotationlink": "ome.model.annotations.ScreenAnnotationLink",
    "plateannotationlink": "ome.model.annotations.PlateAnnotationLink",
    "wellannotationlink": "ome.model.annotations.WellAnnotationLink",
}
# Hibernate logs the concrete class: annotations by their discriminator, jobs by the
# subclass table that holds their row (the generator makes upload jobs and the four
# other FS jobs).
_ANNOTATION_CLASSES = {"/type/OriginalFile/": "FileAnnotation", "/map/": "MapAnnotation",
                       "/basic/text/tag/": "TagAnnotation"}
_TYPE_SQL = {
    "annotation": "'ome.model.annotations.' || CASE x.discriminator "
                  + " ".join(f"WHEN '{d}' THEN '{c}'" for d, c in _ANNOTATION_CLASSES.items())
                  + " ELSE 'Annotation' END",
    "job": "CASE WHEN EXISTS (SELECT 1 FROM uploadjob u WHERE u.job_id = x.id)"
           " THEN 'ome.model.jobs.UploadJob' ELSE 'ome.model.jobs.Job' END",
}
# The generator's tables in the order their rows are created within one event.
LOGGED_TABLES = list(ENTITY_TYPES)
_INDEXES = {"i_EventLog_event": "event", "eventlog_action": "action",
            "eventlog_entitytype": "entityType", "eventlog_entityid": "entityId"}


def entity_type_sql(table):
    """SQL of the logged class name of a row `x` of `table`."""
    if table in _TYPE_SQL:
        return _TYPE_SQL[table]
    return "'" + ENTITY_TYPES[table] + "'"


def log_inserts(conn, bulk=False):
    """An INSERT row for every row of the logged tables, with its creation event.

    bulk=False (small facilities): one statement, the rows in event order, as OMERO's
    ids grow with time. bulk=True (generate_large): table by table with the indexes
    dropped and rebuilt, which is what loading tens of millions of rows allows; the
    ids then grow with time within each table only.
    """
    selects = [f"SELECT x.creation_id AS event, {n} AS tn, x.id, {entity_type_sql(t)} AS etype"
               f" FROM {t} x" for n, t in enumerate(LOGGED_TABLES)]
    insert = ("INSERT INTO eventlog (id, action, permissions, entityid, entitytype, event)"
              " SELECT nextval('seq_eventlog'), 'INSERT', -52, id, etype, event FROM ({}) s"
              " ORDER BY event, tn, id")
    with conn.cursor() as cur:
        if not bulk:
            cur.execute(insert.format(" UNION ALL ".join(selects)))
        else:
            for name in _INDEXES:
                cur.execute(f"DROP INDEX IF EXISTS {name}")
            for select in selects:
                cur.execute(insert.format(select))
            for name, column in _INDEXES.items():
                cur.execute(f"CREATE INDEX {name} ON eventlog({column})")
    conn.commit()


def log(cur, action, table, ids, event):
    """Rows for `ids` of `table` changed by `event` (a cursor inside the change's own
    transaction). For DELETE the rows are gone: give the class name via ENTITY_TYPES."""
    ids = sorted(set(ids))
    if not ids:
        return
    if action == "DELETE":
        cur.execute("INSERT INTO eventlog (id, action, permissions, entityid, entitytype, event)"
                    " SELECT nextval('seq_eventlog'), 'DELETE', -52, i, %s, %s"
                    " FROM unnest(%s::bigint[]) i ORDER BY i", [ENTITY_TYPES[table], event, ids])
        return
    cur.execute("INSERT INTO eventlog (id, action, permissions, entityid, entitytype, event)"
                f" SELECT nextval('seq_eventlog'), %s, -52, x.id, {entity_type_sql(table)}, %s"
                f" FROM {table} x WHERE x.id = ANY(%s) ORDER BY x.id", [action, event, ids])
