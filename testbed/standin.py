"""The stand-in Gateway: what the OMERO server would do, done on the OMERO-shaped database.

Tests and the demo cannot run an OMERO server. This class answers the Gateway seam from
the same database the catalog reads, so a rename or a chown made through it is what the
next scan sees. It passes the same contract tests as the real BlitzGatewayAdapter
(tests/test_gateway_contract.py).

Simplifications, each harmless for the app: chown/chgrp move the container and every
object below it (OMERO's Chown2/Chgrp2 leave out objects also linked from elsewhere);
new rows take max(id)+1 under a table lock instead of OMERO's id sequences.
"""
import psycopg2

from omero_storagemanager.gateway import (ALL_PRIVILEGES, STATE_NS, Gateway, GatewayError,
                                          omero_class)

SYSTEM_GROUP = 0

# Tables below each container kind, with the SQL that selects their ids from the
# container id (%(oid)s). Images lead to their filesets, entries and original files.
_PROJECT_GRAPH = {
    "projectdatasetlink": "SELECT id FROM projectdatasetlink WHERE parent = %(oid)s",
    "dataset": "SELECT child FROM projectdatasetlink WHERE parent = %(oid)s",
    "datasetimagelink": "SELECT l.id FROM datasetimagelink l JOIN projectdatasetlink p"
                        " ON p.child = l.parent WHERE p.parent = %(oid)s",
    "image": "SELECT l.child FROM datasetimagelink l JOIN projectdatasetlink p"
             " ON p.child = l.parent WHERE p.parent = %(oid)s",
}
_SCREEN_GRAPH = {
    "screenplatelink": "SELECT id FROM screenplatelink WHERE parent = %(oid)s",
    "plate": "SELECT child FROM screenplatelink WHERE parent = %(oid)s",
    "well": "SELECT w.id FROM well w JOIN screenplatelink l ON l.child = w.plate"
            " WHERE l.parent = %(oid)s",
    "wellsample": "SELECT s.id FROM wellsample s JOIN well w ON w.id = s.well"
                  " JOIN screenplatelink l ON l.child = w.plate WHERE l.parent = %(oid)s",
    "image": "SELECT s.image FROM wellsample s JOIN well w ON w.id = s.well"
             " JOIN screenplatelink l ON l.child = w.plate WHERE l.parent = %(oid)s",
}
_IMAGE_GRAPH = {
    "pixels": "SELECT id FROM pixels WHERE image IN ({images})",
    "fileset": "SELECT fileset FROM image WHERE id IN ({images}) AND fileset IS NOT NULL",
    "filesetentry": "SELECT e.id FROM filesetentry e JOIN image i ON i.fileset = e.fileset"
                    " WHERE i.id IN ({images})",
    "originalfile": "SELECT e.originalfile FROM filesetentry e JOIN image i"
                    " ON i.fileset = e.fileset WHERE i.id IN ({images})",
}


class StandInGateway(Gateway):
    """A Gateway for one OMERO user, backed by the OMERO-shaped database."""

    def __init__(self, db, user_id):
        """db: a libpq DSN string, or libpq keywords ("name" is taken for "dbname")."""
        if isinstance(db, str):
            self.db_params = {"dsn": db}
        else:
            self.db_params = dict(db)
            if "name" in self.db_params:
                self.db_params["dbname"] = self.db_params.pop("name")
        self._user_id = int(user_id)
        # Identity is read once, as a BlitzGateway reads its event context once per session.
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT omename FROM experimenter WHERE id = %s", [self._user_id])
                row = cur.fetchone()
                if row is None:
                    raise GatewayError(f"no OMERO user with id {self._user_id}")
                self._user_name = row[0]
                cur.execute("SELECT parent, owner FROM groupexperimentermap WHERE child = %s"
                            " ORDER BY parent", [self._user_id])
                memberships = cur.fetchall()
        finally:
            conn.close()
        self._member_of = [group for group, _ in memberships]
        self._leader_of = [group for group, owner in memberships if owner]

    # -- plumbing -------------------------------------------------------------------
    def _connect(self):
        return psycopg2.connect(**self.db_params)

    def _query_one(self, query, params):
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchone()
        finally:
            conn.close()

    def _table(self, kind):
        return omero_class(kind).lower()  # also refuses anything but project/screen

    def _require(self, cur, kind, oid):
        cur.execute(f"SELECT owner_id, group_id FROM {self._table(kind)} WHERE id = %s", [oid])
        row = cur.fetchone()
        if row is None:
            raise GatewayError(f"{omero_class(kind)}:{oid} not found or not visible")
        return row

    def _new_event(self, cur, group_id):
        """An event row for a change, as the server records one per transaction."""
        cur.execute("LOCK TABLE event IN EXCLUSIVE MODE")
        cur.execute("SELECT coalesce(max(id), 0) + 1 FROM event")
        event_id = cur.fetchone()[0]
        self._keep_sequence(cur, "event", event_id)
        cur.execute(
            "INSERT INTO event (id, permissions, time, experimenter, experimentergroup,"
            " session, type)"
            " SELECT %s, -52, now(), %s, %s, (SELECT min(id) FROM session),"
            " (SELECT id FROM eventtype WHERE value = 'User')",
            [event_id, self._user_id, group_id])
        return event_id

    @staticmethod
    def _next_id(cur, table):
        cur.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")
        new_id = cur.fetchone()[0]
        StandInGateway._keep_sequence(cur, table, new_id)
        return new_id

    @staticmethod
    def _keep_sequence(cur, table, used):
        """OMERO allocates ids from seq_<table> (ome_nextval): move it past the id taken
        here, so a change made as OMERO makes it (testbed/changes.py) never reuses it."""
        cur.execute("SELECT to_regclass(%s)", [f"seq_{table}"])
        if cur.fetchone()[0] is not None:
            cur.execute(f"SELECT setval('seq_{table}', GREATEST(%s, last_value)) "
                        f"FROM seq_{table}", [used])

    # -- identity -------------------------------------------------------------------
    def user_id(self):
        return self._user_id

    def user_name(self):
        return self._user_name

    def member_of_groups(self):
        return list(self._member_of)

    def leader_of_groups(self):
        return list(self._leader_of)

    def is_admin(self):
        return SYSTEM_GROUP in self.member_of_groups()

    def admin_privileges(self):
        """As the server decides (LightAdminPrivileges): an admin has every privilege
        except those its experimenter's config lists as "AdminPrivilege:<name>" = false."""
        if not self.is_admin():
            return []
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT substr(name, 16) FROM experimenter_config"
                            " WHERE experimenter_id = %s AND name LIKE 'AdminPrivilege:%%'"
                            " AND lower(value) = 'false'", [self._user_id])
                lacking = {row[0] for row in cur.fetchall()}
        finally:
            conn.close()
        return sorted(ALL_PRIVILEGES - lacking)

    def user_exists(self, user_id):
        return self._query_one("SELECT 1 FROM experimenter WHERE id = %s", [int(user_id)]) \
            is not None

    def group_exists(self, group_id):
        return self._query_one("SELECT 1 FROM experimentergroup WHERE id = %s",
                               [int(group_id)]) is not None

    # -- reads used to check writes -----------------------------------------------------
    def describe(self, kind, oid):
        row = self._query_one(
            f"SELECT name, owner_id, group_id FROM {self._table(kind)} WHERE id = %s", [oid])
        if row is None:
            raise GatewayError(f"{omero_class(kind)}:{oid} not found or not visible")
        return {"name": row[0], "owner_id": row[1], "group_id": row[2]}

    # -- writes ---------------------------------------------------------------------
    def rename(self, kind, oid, name):
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                _, group_id = self._require(cur, kind, oid)
                event_id = self._new_event(cur, group_id)
                cur.execute(f"UPDATE {self._table(kind)} SET name = %s, update_id = %s,"
                            " version = coalesce(version, 0) + 1 WHERE id = %s",
                            [name, event_id, oid])
        finally:
            conn.close()

    def _graph_ids(self, cur, kind, oid):
        graph = _PROJECT_GRAPH if kind == "project" else _SCREEN_GRAPH
        ids = {self._table(kind): [oid]}
        for table, query in graph.items():
            cur.execute(query, {"oid": oid})
            ids[table] = sorted({row[0] for row in cur.fetchall()})
        if ids["image"]:
            images = ",".join(str(int(i)) for i in ids["image"])
            for table, query in _IMAGE_GRAPH.items():
                cur.execute(query.format(images=images))
                ids[table] = sorted({row[0] for row in cur.fetchall()})
        return ids

    def _move(self, kind, oid, column, value):
        if not self.is_admin():
            raise GatewayError("only an OMERO administrator may move data between users or groups")
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                self._require(cur, kind, oid)
                for table, ids in self._graph_ids(cur, kind, int(oid)).items():
                    if ids:
                        cur.execute(f"UPDATE {table} SET {column} = %s WHERE id = ANY(%s)",
                                    [int(value), ids])
        finally:
            conn.close()

    def chown(self, kind, oid, user_id):
        if self._query_one("SELECT 1 FROM experimenter WHERE id = %s", [user_id]) is None:
            raise GatewayError(f"no OMERO user with id {user_id}")
        self._move(kind, oid, "owner_id", user_id)

    def chgrp(self, kind, oid, group_id):
        if self._query_one("SELECT 1 FROM experimentergroup WHERE id = %s", [group_id]) is None:
            raise GatewayError(f"no OMERO group with id {group_id}")
        self._move(kind, oid, "group_id", group_id)

    def _state_annotation_ids(self, cur, kind, oid):
        link = f"{self._table(kind)}annotationlink"
        cur.execute(
            f"SELECT a.id FROM {link} l JOIN annotation a ON a.id = l.child"
            " WHERE l.parent = %s AND a.ns = %s AND a.discriminator = '/map/'"
            " ORDER BY a.id", [oid, STATE_NS])
        return [row[0] for row in cur.fetchall()]

    def _delete_annotations(self, cur, kind, ids):
        if ids:
            cur.execute(f"DELETE FROM {self._table(kind)}annotationlink WHERE child = ANY(%s)", [ids])
            cur.execute("DELETE FROM annotation_mapvalue WHERE annotation_id = ANY(%s)", [ids])
            cur.execute("DELETE FROM annotation WHERE id = ANY(%s)", [ids])

    def set_state(self, kind, oid, pairs):
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                owner_id, group_id = self._require(cur, kind, oid)
                self._delete_annotations(cur, kind, self._state_annotation_ids(cur, kind, oid))
                event_id = self._new_event(cur, group_id)
                ann_id = self._next_id(cur, "annotation")
                cur.execute(
                    "INSERT INTO annotation (discriminator, id, permissions, ns, version,"
                    " creation_id, group_id, owner_id, update_id)"
                    " VALUES ('/map/', %s, -120, %s, 0, %s, %s, %s, %s)",
                    [ann_id, STATE_NS, event_id, group_id, self._user_id, event_id])
                for index, (key, value) in enumerate(pairs):
                    cur.execute(
                        "INSERT INTO annotation_mapvalue (annotation_id, name, value, index)"
                        " VALUES (%s, %s, %s, %s)", [ann_id, str(key), str(value), index])
                link = f"{self._table(kind)}annotationlink"
                link_id = self._next_id(cur, link)
                cur.execute(
                    f"INSERT INTO {link} (id, permissions, version, parent, child,"
                    " creation_id, group_id, owner_id, update_id)"
                    " VALUES (%s, -120, 0, %s, %s, %s, %s, %s, %s)",
                    [link_id, oid, ann_id, event_id, group_id, self._user_id, event_id])
        finally:
            conn.close()

    def get_state(self, kind, oid):
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                self._require(cur, kind, oid)
                ids = self._state_annotation_ids(cur, kind, oid)
                if not ids:
                    return None
                cur.execute("SELECT name, value FROM annotation_mapvalue"
                            " WHERE annotation_id = %s ORDER BY index", [ids[-1]])
                return [tuple(row) for row in cur.fetchall()]
        finally:
            conn.close()

    def clear_state(self, kind, oid):
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                self._require(cur, kind, oid)
                self._delete_annotations(cur, kind, self._state_annotation_ids(cur, kind, oid))
        finally:
            conn.close()


def admin_gateway():
    """gateway_factory of the tests and the demo: the stand-in, as OMERO's root."""
    from omero_storagemanager import settings

    return StandInGateway(settings.omero_db_params(), 0)
