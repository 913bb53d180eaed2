"""OMERO-shaped PostgreSQL databases: the schema subset of omero_schema.sql plus the rows
OMERO's own psql-footer.sql inserts (root and guest, the system/user/guest groups, the
enumerations, the bootstrap session and event).

    dsn = create_omero_database(server, "omero")     # server: testbed.pg.PostgresServer
    load_schema(conn)                                  # into an existing empty database
"""
from pathlib import Path

SCHEMA_SQL = Path(__file__).with_name("omero_schema.sql")

# OMERO's fixed role ids (the _roles table).
ROOT_ID, GUEST_ID = 0, 1
SYSTEM_GROUP_ID, USER_GROUP_ID, GUEST_GROUP_ID = 0, 1, 2

# experimentergroup.permissions of the four group levels.
PERMISSIONS = {"private": -120, "read-only": -56, "read-annotate": -40, "read-write": -8}
# Enumerations are readable by everybody: OMERO stores them with permissions -52.
ENUM_PERMISSIONS = -52

# The enumerations, in psql-footer.sql's insertion order: ids come from fresh sequences,
# so the first value gets id 1 (eventtype 'Bootstrap' is inserted with id 0).
CHECKSUM_ALGORITHMS = {1: "Adler-32", 2: "CRC-32", 3: "MD5-128", 4: "Murmur3-32",
                       5: "Murmur3-128", 6: "SHA1-160", 7: "File-Size-64"}
SHA1_160, MD5_128 = 6, 3
EVENT_TYPES = {0: "Bootstrap", 1: "Import", 2: "Internal", 3: "Shoola", 4: "User", 5: "Task",
               6: "Test", 7: "Processing", 8: "FullText", 9: "Sessions"}
JOB_STATUSES = {1: "Submitted", 2: "Resubmitted", 3: "Queued", 4: "Requeued", 5: "Running",
                6: "Error", 7: "Waiting", 8: "Finished", 9: "Cancelled"}
DIMENSION_ORDERS = {1: "XYZCT", 2: "XYZTC", 3: "XYCTZ", 4: "XYCZT", 5: "XYTCZ", 6: "XYTZC"}
PIXELS_TYPES = {1: ("bit", 1), 2: ("int8", 8), 3: ("int16", 16), 4: ("int32", 32),
                5: ("uint8", 8), 6: ("uint16", 16), 7: ("uint32", 32), 8: ("float", 32),
                9: ("double", 64), 10: ("complex", 64), 11: ("double-complex", 128)}

# OMERO stamps its bootstrap rows with clock_timestamp(); a fixed time keeps generated
# databases identical from one run to the next.
BOOTSTRAP_TIME = "2012-06-04 09:00:00"

# Every table with an id and its OMERO sequence (seq_<table>).
SEQUENCE_TABLES = [
    "annotation", "checksumalgorithm", "dataset", "datasetannotationlink",
    "datasetimagelink", "dbpatch", "dimensionorder", "event", "eventlog", "eventtype",
    "experimenter",
    "experimentergroup", "fileset", "filesetannotationlink", "filesetentry",
    "filesetjoblink", "groupexperimentermap", "image", "imageannotationlink", "job",
    "joboriginalfilelink", "jobstatus", "node", "originalfile", "pixels",
    "pixelsoriginalfilemap", "pixelstype", "plate", "plateannotationlink", "project",
    "projectannotationlink", "projectdatasetlink", "screen", "screenannotationlink",
    "screenplatelink", "session", "thumbnail", "well", "wellannotationlink", "wellsample",
]


def create_omero_database(server, name):
    """A fresh database `name` on `server` with the schema and OMERO's built-in rows.

    An existing database of that name is dropped first. Returns its DSN.
    """
    server.drop_database(name)
    dsn = server.create_database(name)
    conn = server.connect(name)
    try:
        load_schema(conn)
    finally:
        conn.close()
    return dsn


def load_schema(conn, builtins=True):
    """Create the tables in an empty database and (by default) insert the built-in rows."""
    with conn.cursor() as cur:
        cur.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
        if builtins:
            insert_builtins(cur)
    conn.commit()
    if builtins:
        sync_sequences(conn)


def schema_loaded(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.experimenter') IS NOT NULL")
        return cur.fetchone()[0]


def insert_builtins(cur):
    """The rows psql-footer.sql inserts, with the same ids and values."""
    t = BOOTSTRAP_TIME
    cur.execute("INSERT INTO dbpatch (id, currentversion, currentpatch, previousversion,"
                " previouspatch, permissions, message, finished)"
                " VALUES (1, 'OMERO5.4', 0, 'OMERO5.4', 0, -52, 'Database ready.', %s)", [t])
    cur.execute("INSERT INTO configuration VALUES ('omero.db.uuid',"
                " '6f2b1c1e-0d4a-4c8e-9a57-5a0e0c0d0e01')")
    cur.execute("INSERT INTO _roles VALUES (%s, %s, %s, %s, %s)",
                [ROOT_ID, GUEST_ID, SYSTEM_GROUP_ID, USER_GROUP_ID, GUEST_GROUP_ID])
    cur.execute("INSERT INTO experimenter (id, permissions, version, omename, firstname, lastname)"
                " VALUES (0, 0, 0, 'root', 'root', 'root'), (1, 0, 0, 'guest', 'Guest', 'Account')")
    cur.execute("INSERT INTO node (id, permissions, uuid, conn, up, down)"
                " VALUES (0, -52, '000000000000000000000000000000000000', 'unknown', %s, %s)",
                [t, t])
    cur.execute("INSERT INTO session (id, permissions, timetoidle, timetolive, started, closed,"
                " defaulteventtype, uuid, owner, node) VALUES"
                " (0, -52, 0, 0, %s, %s, 'BOOTSTRAP', '0000', 0, 0),"
                " (1, -52, 0, 0, %s, %s, 'PREVIOUSITEMS', '1111', 0, 0)", [t, t, t, t])
    # Default group permissions (OMERO ticket:1783): system and guest private, user
    # readable by all (-52).
    cur.execute("INSERT INTO experimentergroup (id, permissions, version, name) VALUES"
                " (0, -120, 0, 'system'), (1, -52, 0, 'user'), (2, -120, 0, 'guest')")
    cur.executemany("INSERT INTO eventtype (id, permissions, value) VALUES (%s, -52, %s)",
                    list(EVENT_TYPES.items()))
    cur.execute("INSERT INTO event (id, permissions, time, status, experimenter,"
                " experimentergroup, session, type) VALUES (0, 0, %s, 'BOOTSTRAP', 0, 0, 0, 0)",
                [t])
    # root is in system (as its owner) and user; guest is in guest.
    cur.execute("INSERT INTO groupexperimentermap (id, permissions, version, parent, child,"
                " child_index, owner) VALUES (0, -52, 0, 0, 0, 0, true),"
                " (1, -52, 0, 1, 0, 1, false), (2, -52, 0, 2, 1, 0, false)")
    for table, values in (("checksumalgorithm", CHECKSUM_ALGORITHMS),
                          ("jobstatus", JOB_STATUSES),
                          ("dimensionorder", DIMENSION_ORDERS)):
        cur.executemany(f"INSERT INTO {table} (id, permissions, value) VALUES (%s, -52, %s)",
                        list(values.items()))
    cur.executemany("INSERT INTO pixelstype (id, permissions, value, bitsize)"
                    " VALUES (%s, -52, %s, %s)",
                    [(i, name, bits) for i, (name, bits) in PIXELS_TYPES.items()])


def sync_sequences(conn):
    """Move every seq_<table> past the table's highest id, as if OMERO had allocated them.

    Call after inserting rows with explicit ids, so that later ome_nextval() calls (a
    stand-in gateway writing annotations, say) never collide.
    """
    with conn.cursor() as cur:
        for table in SEQUENCE_TABLES:
            cur.execute(f"SELECT max(id) FROM {table}")
            top = cur.fetchone()[0]
            if top is None or top < 1:
                cur.execute("SELECT setval(%s, 1, false)", [f"seq_{table}"])
            else:
                cur.execute("SELECT setval(%s, %s)", [f"seq_{table}", top])
    conn.commit()
