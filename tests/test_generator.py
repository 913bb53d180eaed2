"""The test bed's OMERO-shaped database and facility generator, on a real PostgreSQL.

The checks here read the database with their own SQL and the disk with os calls, and
compare with the generator's Truth: the oracle the app's own tests rely on must hold.
"""
import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from testbed.generator import (generate_facility, generate_large, numbered_path,
                               template_prefix)
from testbed.omerodb import create_omero_database
from testbed.truth import Truth

REPO = Path(__file__).resolve().parent.parent

# (table, column, NOT NULL) as in OMERO's sql/psql/OMERO5.4__0/schema.sql (+ psql-footer.sql).
OMERO_COLUMNS = [
    ("project", "name", True), ("project", "description", False),
    ("project", "owner_id", True), ("project", "group_id", True),
    ("project", "creation_id", True), ("project", "update_id", True),
    ("project", "permissions", True), ("project", "external_id", False),
    ("dataset", "name", True), ("dataset", "owner_id", True),
    ("image", "name", True), ("image", "fileset", False), ("image", "archived", False),
    ("image", "series", False), ("image", "acquisitiondate", False),
    ("screen", "name", True), ("plate", "name", True), ("plate", "rows", False),
    ("plate", "columns", False), ("well", "plate", True), ("well", "row", False),
    ("well", "column", False), ("wellsample", "well", True), ("wellsample", "image", True),
    ("wellsample", "well_index", True), ("wellsample", "plateacquisition", False),
    ("projectdatasetlink", "parent", True), ("projectdatasetlink", "child", True),
    ("datasetimagelink", "parent", True), ("datasetimagelink", "child", True),
    ("screenplatelink", "parent", True), ("screenplatelink", "child", True),
    ("fileset", "templateprefix", True), ("filesetentry", "fileset", True),
    ("filesetentry", "originalfile", True), ("filesetentry", "clientpath", True),
    ("filesetentry", "fileset_index", True),
    ("originalfile", "path", True), ("originalfile", "name", True),
    ("originalfile", "size", False), ("originalfile", "hash", False),
    ("originalfile", "hasher", False), ("originalfile", "mimetype", False),
    ("originalfile", "repo", False), ("originalfile", "atime", False),
    ("originalfile", "ctime", False), ("originalfile", "mtime", False),
    ("pixels", "image", True), ("pixels", "sha1", True), ("pixels", "sizex", True),
    ("pixels", "sizey", True), ("pixels", "sizez", True), ("pixels", "sizec", True),
    ("pixels", "sizet", True), ("pixels", "pixelstype", True),
    ("pixels", "dimensionorder", True), ("pixels", "image_index", True),
    ("pixels", "path", False), ("pixels", "name", False), ("pixels", "repo", False),
    ("thumbnail", "pixels", True), ("thumbnail", "mimetype", True),
    ("thumbnail", "sizex", True), ("thumbnail", "ref", False),
    ("pixelsoriginalfilemap", "parent", True), ("pixelsoriginalfilemap", "child", True),
    ("job", "status", True), ("job", "username", True), ("job", "groupname", True),
    ("job", "type", True), ("job", "message", True), ("job", "submitted", True),
    ("job", "scheduledfor", True), ("job", "started", False), ("job", "finished", False),
    ("uploadjob", "job_id", True), ("importjob", "imagename", True),
    ("filesetjoblink", "parent", True), ("filesetjoblink", "child", True),
    ("filesetjoblink", "parent_index", True),
    ("joboriginalfilelink", "parent", True), ("joboriginalfilelink", "child", True),
    ("experimenter", "omename", True), ("experimenter", "firstname", True),
    ("experimenter", "lastname", True), ("experimenter", "email", False),
    ("experimenter", "ldap", True), ("experimenter", "middlename", False),
    ("experimentergroup", "name", True), ("experimentergroup", "permissions", True),
    ("experimentergroup", "ldap", True), ("experimentergroup", "description", False),
    ("groupexperimentermap", "parent", True), ("groupexperimentermap", "child", True),
    ("groupexperimentermap", "owner", True), ("groupexperimentermap", "child_index", True),
    ("event", "time", True), ("event", "experimenter", True),
    ("event", "experimentergroup", True), ("event", "session", True),
    ("event", "type", True), ("event", "containingevent", False), ("event", "status", False),
    ("session", "uuid", True), ("session", "node", True), ("session", "owner", True),
    ("session", "started", True), ("session", "defaulteventtype", True),
    ("session", "timetoidle", True), ("session", "closed", False), ("node", "uuid", True),
    ("annotation", "discriminator", True), ("annotation", "file", False),
    ("annotation", "ns", False), ("annotation", "textvalue", False),
    ("annotation_mapvalue", "annotation_id", True), ("annotation_mapvalue", "name", True),
    ("annotation_mapvalue", "value", True), ("annotation_mapvalue", "index", True),
    ("checksumalgorithm", "value", True), ("eventtype", "value", True),
    ("jobstatus", "value", True), ("pixelstype", "bitsize", False),
]
LINK_TABLES = ["projectannotationlink", "datasetannotationlink", "imageannotationlink",
               "screenannotationlink", "plateannotationlink", "wellannotationlink"]


def query(db, sql, params=()):
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
            return cur.fetchall()
    finally:
        conn.close()


def sha1(path):
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


# -- the schema and OMERO's built-in rows ------------------------------------------------------

def test_schema_has_omero_tables_columns_and_not_null(omero_db):
    rows = query(omero_db, "SELECT table_name, column_name, is_nullable FROM"
                           " information_schema.columns WHERE table_schema = 'public'")
    columns = {(t, c): nullable == "NO" for t, c, nullable in rows}
    expected = OMERO_COLUMNS + [(t, c, True) for t in LINK_TABLES for c in
                                ("parent", "child", "owner_id", "group_id", "creation_id",
                                 "update_id", "permissions")]
    wrong = [(t, c, nn, columns.get((t, c))) for t, c, nn in expected
             if columns.get((t, c)) is not nn]
    assert not wrong, f"(table, column, expected NOT NULL, found): {wrong}"


def test_schema_types_as_omero(omero_db):
    rows = query(omero_db, "SELECT table_name, column_name, data_type,"
                           " character_maximum_length, domain_name"
                           " FROM information_schema.columns WHERE table_schema = 'public'")
    info = {(t, c): (dtype, length, domain) for t, c, dtype, length, domain in rows}
    assert info["originalfile", "size"][0] == "bigint"
    assert info["originalfile", "hash"][0] == "text"
    assert info["originalfile", "repo"][:2] == ("character varying", 36)
    assert info["fileset", "templateprefix"][0] == "text"
    assert info["event", "time"][0] == "timestamp without time zone"
    assert info["pixels", "sizex"][2] == "positive_int"
    assert info["image", "series"][2] == "nonnegative_int"


def test_schema_keys_as_omero(omero_db):
    rows = query(omero_db, """
        SELECT c.conrelid::regclass::text, c.contype, c.confrelid::regclass::text,
               array_agg(a.attname::text ORDER BY a.attname)
        FROM pg_constraint c JOIN pg_attribute a
             ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.contype IN ('u', 'f', 'p') GROUP BY c.oid, c.conrelid, c.contype, c.confrelid""")
    unique = {(t, tuple(cols)) for t, kind, _, cols in rows if kind in "up"}
    foreign = {(t, cols[0], ref) for t, kind, ref, cols in rows if kind == "f"}
    for table, cols in [("filesetentry", ("fileset", "fileset_index")),
                        ("experimenter", ("omename",)), ("experimentergroup", ("name",)),
                        ("groupexperimentermap", ("child", "parent")),
                        ("groupexperimentermap", ("child", "child_index")),
                        ("wellsample", ("well", "well_index")),
                        ("pixels", ("image", "image_index")),
                        ("projectdatasetlink", ("child", "owner_id", "parent")),
                        ("filesetjoblink", ("parent", "parent_index")),
                        ("annotation_mapvalue", ("annotation_id", "index")),
                        ("uploadjob", ("job_id",)), ("session", ("uuid",))]:
        assert (table, cols) in unique, (table, cols)
    for fk in [("image", "fileset", "fileset"), ("filesetentry", "originalfile", "originalfile"),
               ("filesetentry", "fileset", "fileset"),
               ("originalfile", "hasher", "checksumalgorithm"),
               ("annotation", "file", "originalfile"),
               ("pixelsoriginalfilemap", "parent", "originalfile"),
               ("pixelsoriginalfilemap", "child", "pixels"), ("thumbnail", "pixels", "pixels"),
               ("event", "session", "session"), ("event", "type", "eventtype"),
               ("session", "node", "node"), ("project", "owner_id", "experimenter"),
               ("project", "creation_id", "event"), ("wellsample", "image", "image"),
               ("joboriginalfilelink", "child", "originalfile"),
               ("filesetjoblink", "child", "job"), ("uploadjob", "job_id", "job")]:
        assert fk in foreign, fk
    # OMERO's guard against two rows for one repository path.
    indexes = query(omero_db, "SELECT indexname FROM pg_indexes WHERE tablename = 'originalfile'")
    assert ("originalfile_repo_path_index",) in indexes


def test_builtin_rows_as_omero(omero_db):
    assert query(omero_db, "SELECT id, omename FROM experimenter ORDER BY id") == [
        (0, "root"), (1, "guest")]
    assert query(omero_db, "SELECT id, name, permissions FROM experimentergroup ORDER BY id") == [
        (0, "system", -120), (1, "user", -52), (2, "guest", -120)]
    assert query(omero_db, "SELECT parent, child, owner FROM groupexperimentermap"
                           " ORDER BY id") == [(0, 0, True), (1, 0, False), (2, 1, False)]
    assert query(omero_db, "SELECT id, value FROM checksumalgorithm ORDER BY id") == [
        (1, "Adler-32"), (2, "CRC-32"), (3, "MD5-128"), (4, "Murmur3-32"),
        (5, "Murmur3-128"), (6, "SHA1-160"), (7, "File-Size-64")]
    assert query(omero_db, "SELECT value FROM eventtype WHERE id IN (0, 1, 4) ORDER BY id") == [
        ("Bootstrap",), ("Import",), ("User",)]
    assert query(omero_db, "SELECT id FROM jobstatus WHERE value = 'Finished'") == [(8,)]
    assert query(omero_db, "SELECT id, experimenter, session, type FROM event") == [(0, 0, 0, 0)]
    assert query(omero_db, "SELECT ome_perms(-40), ome_perms(-56), ome_perms(-8),"
                           " ome_perms(-120)") == [("rwra--", "rwr---", "rwrw--", "rw----")]
    # The sequences continue after the built-in rows, as ome_nextval() would.
    assert query(omero_db, "SELECT ome_nextval('seq_experimenter')") == [(2,)]


def test_numbered_path_rule():
    assert numbered_path(999) == "999"
    assert numbered_path(1000) == "Dir-001/1000"
    assert numbered_path(123456) == "Dir-123/123456"
    assert numbered_path(1234567) == "Dir-001/Dir-234/1234567"
    assert numbered_path(1234567890) == "Dir-001/Dir-234/Dir-567/1234567890"


# -- the generated facility: truth against disk ------------------------------------------------

def test_every_truth_file_is_on_disk_as_recorded(facility):
    truth = facility.truth
    files = truth.all_files()
    assert len(files) > 500
    kinds = {f["kind"] for f in files}
    assert kinds == {"fileset_entry", "import_log", "pixels", "pyramid", "pyramid_lock",
                     "original", "attachment"}
    for f in files:
        if f["missing"]:
            assert not os.path.lexists(f["path"]), f
            continue
        assert os.path.isfile(f["path"]), f
        assert os.path.getsize(f["path"]) == f["size"], f
        assert int(os.stat(f["path"]).st_mtime) == f["mtime"], f
        if f["hasher"] == "SHA1-160":
            assert sha1(f["path"]) == f["hash"], f
        elif f["hasher"] == "MD5-128":
            assert hashlib.md5(Path(f["path"]).read_bytes()).hexdigest() == f["hash"], f
        else:
            assert f["hash"] is None
    for col in truth.collections.values():
        for t in col["thumbnails"]:
            assert os.path.getsize(t["path"]) == t["size"]
    assert any(f["size"] == 0 for f in files), "zero-byte files"
    assert sum(f["size"] for f in files) < 100 * 1024 ** 2


def test_truth_files_are_once_per_collection_and_sorted(facility):
    for key, col in facility.truth.collections.items():
        paths = [f["path"] for f in col["files"]]
        assert paths == sorted(set(paths)), key
        assert col["image_ids"] == sorted(set(col["image_ids"])), key
        for f in col["files"]:
            assert key not in f["shared_with"]


# -- the database against disk, with independent SQL ---------------------------------------------

def test_every_fileset_entry_is_the_managed_file(facility):
    truth = facility.truth
    managed = Path(truth.managed_dir)
    anomalies = {a["path"]: a for a in truth.anomalies}
    rows = query(facility, """
        SELECT o.path, o.name, o."size", o.hash, h.value, o.repo, fs.templateprefix
        FROM filesetentry e JOIN originalfile o ON o.id = e.originalfile
        JOIN fileset fs ON fs.id = e.fileset LEFT JOIN checksumalgorithm h ON h.id = o.hasher""")
    assert len(rows) >= 480
    for path, name, size, digest, hasher, repo, prefix in rows:
        assert path.startswith(prefix) and path.endswith("/")
        assert repo == truth.managed_repo_uuid
        full = managed / (path + name)
        anomaly = anomalies.get(str(full))
        if anomaly and anomaly["kind"] == "missing":
            assert not full.exists()
            continue
        assert full.is_file(), full
        if anomaly:
            assert anomaly["kind"] == "size_mismatch" and size == anomaly["db_size"]
            assert full.stat().st_size == anomaly["disk_size"] != size
            continue
        assert full.stat().st_size == size, full
        data = full.read_bytes()
        assert digest == {"SHA1-160": hashlib.sha1, "MD5-128": hashlib.md5}[hasher](data).hexdigest()
    assert len(anomalies) == 2


def test_templateprefix_follows_the_import_time(facility):
    rows = query(facility, """
        SELECT fs.templateprefix, e.omename, e.id, ev.time FROM fileset fs
        JOIN experimenter e ON e.id = fs.owner_id JOIN event ev ON ev.id = fs.creation_id""")
    for prefix, omename, uid, when in rows:
        assert prefix == template_prefix(omename, uid, when)
        assert (Path(facility.truth.managed_dir) / prefix).is_dir()


def test_import_log_beside_each_fileset_folder(facility):
    rows = query(facility, """
        SELECT fs.id, fs.templateprefix, o.path, o.name, o."size"
        FROM fileset fs JOIN filesetjoblink fjl ON fjl.parent = fs.id
        JOIN uploadjob u ON u.job_id = fjl.child
        JOIN joboriginalfilelink jol ON jol.parent = fjl.child
        JOIN originalfile o ON o.id = jol.child
        WHERE o.mimetype = 'application/omero-log-file'""")
    filesets = query(facility, "SELECT count(*) FROM fileset")[0][0]
    assert len(rows) == filesets == len({r[0] for r in rows})
    managed = Path(facility.truth.managed_dir)
    for _, prefix, path, name, size in rows:
        assert path + name == prefix.rstrip("/") + ".log"
        assert (managed / path / name).stat().st_size == size
    jobs = query(facility, "SELECT count(*) FROM filesetjoblink")[0][0]
    assert jobs == 5 * filesets  # upload, metadata, pixel data, thumbnails, indexing


def test_numbered_files_of_pixels_originals_thumbnails(facility):
    data = Path(facility.truth.data_dir)
    # OMERO 4 images: Pixels/<id> holds the planes, sized by the dimensions.
    rows = query(facility, """
        SELECT p.id, p.sizex * p.sizey * p.sizez * p.sizec * p.sizet * t.bitsize / 8
        FROM pixels p JOIN image i ON i.id = p.image JOIN pixelstype t ON t.id = p.pixelstype
        WHERE i.fileset IS NULL""")
    assert {pid for pid, _ in rows} >= {999, 1000}
    for pid, size in rows:
        assert (data / "Pixels" / numbered_path(pid)).stat().st_size == size
    assert (data / "Pixels" / "Dir-001" / "1000").is_file()
    # Pyramids and their lock files, for an OMERO 4 image and an FS image (two Dir- levels).
    pyramids = sorted(p.relative_to(data).as_posix() for p in data.glob("Pixels/**/*_pyramid"))
    assert any(p.count("Dir-") == 2 for p in pyramids) and len(pyramids) == 2
    for p in pyramids:
        assert (data / (p + ".pyr_lock")).is_file()
    # Archived originals: pixelsoriginalfilemap -> Files/<originalfile id>, repo NULL.
    rows = query(facility, """
        SELECT o.id, o."size", o.repo FROM pixelsoriginalfilemap m
        JOIN originalfile o ON o.id = m.parent""")
    assert len(rows) == 3 and {r[0] for r in rows} >= {999, 1000}
    for ofid, size, repo in rows:
        assert repo is None
        assert (data / "Files" / numbered_path(ofid)).stat().st_size == size
    # Every thumbnail row has its file.
    ids = [r[0] for r in query(facility, "SELECT id FROM thumbnail")]
    assert 999 in ids and 1000 in ids
    for tid in ids:
        assert (data / "Thumbnails" / numbered_path(tid)).is_file()


def test_file_annotations_in_files_and_linked_everywhere(facility):
    data = Path(facility.truth.data_dir)
    rows = query(facility, """
        SELECT a.id, o.id, o."size", o.hash FROM annotation a JOIN originalfile o ON o.id = a."file"
        WHERE a.discriminator = '/type/OriginalFile/'""")
    assert len(rows) >= 5
    for _, ofid, size, digest in rows:
        path = data / "Files" / numbered_path(ofid)
        assert path.stat().st_size == size and sha1(path) == digest
    linked = {t: query(facility, f"SELECT count(*) FROM {t} l JOIN annotation a ON a.id = l.child"
                                 " WHERE a.discriminator = '/type/OriginalFile/'")[0][0]
              for t in LINK_TABLES}
    for table in ("projectannotationlink", "imageannotationlink", "screenannotationlink",
                  "plateannotationlink"):
        assert linked[table] >= 1, table
    assert query(facility, "SELECT count(*) FROM annotation_mapvalue v JOIN annotation a"
                           " ON a.id = v.annotation_id WHERE a.discriminator = '/map/'")[0][0] == 3
    tags = query(facility, "SELECT textvalue FROM annotation WHERE discriminator = '/basic/text/tag/'")
    assert {"nuclei", "hit", "legacy"} <= {t for t, in tags}


def test_shared_fileset_has_images_in_two_projects(facility):
    rows = query(facility, """
        SELECT i.fileset, array_agg(DISTINCT pdl.parent ORDER BY pdl.parent)
        FROM image i JOIN datasetimagelink dil ON dil.child = i.id
        JOIN projectdatasetlink pdl ON pdl.child = dil.parent
        WHERE i.fileset IS NOT NULL GROUP BY i.fileset HAVING count(DISTINCT pdl.parent) > 1""")
    truth = facility.truth
    shared = {fs: projects for fs, projects in rows}
    assert shared, "a fileset with images in two projects"
    for fs, projects in shared.items():
        for pid in projects:
            col = truth.collection("project", pid)
            entries = [f for f in col["files"] if f["fileset_id"] == fs]
            assert entries
            others = sorted(f"Project:{p}" for p in projects if p != pid)
            assert all(f["shared_with"] == others for f in entries)
    # The .lif's series are split: each project sees the others' images as foreign.
    lif = [c for c in truth.collections.values()
           if c["foreign_image_ids"] and c["kind"] == "project"]
    assert len(lif) >= 2


def test_image_linked_twice_counted_once(facility):
    rows = query(facility, """
        SELECT pdl.parent, dil.child FROM datasetimagelink dil
        JOIN projectdatasetlink pdl ON pdl.child = dil.parent
        GROUP BY pdl.parent, dil.child HAVING count(*) > 1""")
    assert rows, "an image linked from two datasets of one project"
    for pid, iid in rows:
        col = facility.truth.collection("project", pid)
        assert col["image_ids"].count(iid) == 1
        fileset = query(facility, "SELECT fileset FROM image WHERE id = %s", [iid])[0][0]
        entries = query(facility, "SELECT count(*) FROM filesetentry WHERE fileset = %s",
                        [fileset])[0][0]
        assert len([f for f in col["files"] if f["fileset_id"] == fileset]) == entries + 1


def test_dataset_in_two_projects_and_plate_in_two_screens(facility):
    truth = facility.truth
    rows = query(facility, "SELECT child, array_agg(parent ORDER BY parent) FROM"
                           " projectdatasetlink GROUP BY child HAVING count(*) > 1")
    assert rows
    for _, projects in rows:
        a, b = (truth.collection("project", p) for p in projects)
        common = set(a["image_ids"]) & set(b["image_ids"])
        assert common
        shared = [f for f in a["files"] if f"Project:{b['id']}" in f["shared_with"]]
        assert shared
        both = truth.union_bytes([f"Project:{a['id']}", f"Project:{b['id']}"])
        totals = truth.collection_totals()
        assert both == (totals[f"Project:{a['id']}"]["bytes"] + totals[f"Project:{b['id']}"]["bytes"]
                        - sum(f["size"] for f in shared))
    rows = query(facility, "SELECT child, array_agg(parent ORDER BY parent) FROM"
                           " screenplatelink GROUP BY child HAVING count(*) > 1")
    assert len(rows) == 1
    # The big plate: one fileset of hundreds of files.
    big = query(facility, "SELECT max(n) FROM (SELECT count(*) n FROM filesetentry"
                          " GROUP BY fileset) c")[0][0]
    assert big > 300


def test_inplace_symlinks_point_outside_the_repository(facility):
    truth = facility.truth
    links = [f for f in truth.all_files() if f["symlink_target"]]
    assert len(links) == 2
    data = Path(truth.data_dir).resolve()
    for f in links:
        assert os.path.islink(f["path"])
        target = Path(os.path.realpath(f["path"]))
        assert target == Path(f["symlink_target"])
        assert data not in target.parents
        assert Path(truth.inplace_dir).resolve() in target.parents
    # The database records the target's size, as OMERO does for in-place imports.
    for f in links:
        assert query(facility, 'SELECT "size" FROM originalfile WHERE id = %s',
                     [f["originalfile_id"]])[0][0] == os.path.getsize(f["symlink_target"])


def test_truth_collections_match_the_database(facility):
    truth = facility.truth
    projects = defaultdict(set)
    for pid, iid in query(facility, "SELECT pdl.parent, dil.child FROM projectdatasetlink pdl"
                                    " JOIN datasetimagelink dil ON dil.parent = pdl.child"):
        projects[pid].add(iid)
    screens = defaultdict(set)
    for sid, iid in query(facility, """
            SELECT spl.parent, ws.image FROM screenplatelink spl
            JOIN well w ON w.plate = spl.child JOIN wellsample ws ON ws.well = w.id"""):
        screens[sid].add(iid)
    found = {f"Project:{p}": sorted(i) for p, i in projects.items()}
    found.update({f"Screen:{s}": sorted(i) for s, i in screens.items()})
    for pid, in query(facility, "SELECT id FROM project"):
        found.setdefault(f"Project:{pid}", [])
    for sid, in query(facility, "SELECT id FROM screen"):
        found.setdefault(f"Screen:{sid}", [])
    assert {k: c["image_ids"] for k, c in truth.collections.items()} == found
    for key, name, owner, group in (
            query(facility, "SELECT 'Project:' || id, name, owner_id, group_id FROM project")
            + query(facility, "SELECT 'Screen:' || id, name, owner_id, group_id FROM screen")):
        col = truth.collections[key]
        assert (col["name"], col["owner_id"], col["group_id"]) == (name, owner, group)


def test_users_groups_and_permissions(facility):
    truth = facility.truth
    levels = {p for g, p in query(facility, "SELECT id, permissions FROM experimentergroup"
                                             " WHERE id > 2")}
    assert levels == {-120, -56, -40, -8}
    members = defaultdict(set)
    owners = defaultdict(set)
    for group, user, owner in query(facility, "SELECT parent, child, owner FROM groupexperimentermap"):
        members[user].add(group)
        if owner:
            owners[user].add(group)
    users = query(facility, "SELECT id, omename, firstname, lastname, email FROM experimenter"
                            " WHERE id > 1")
    assert len(users) >= 6
    for uid, omename, first, last, email in users:
        assert 1 in members[uid]
        expected = truth.users[uid]
        assert (expected["omename"], expected["firstname"], expected["lastname"],
                expected["email"]) == (omename, first, last, email)
        assert expected["groups"] == sorted(members[uid])
        assert expected["owner_of"] == sorted(owners[uid])
    assert sum(len(g) > 2 for g in members.values()) >= 3, "users in several groups"
    assert any(u["admin"] for u in truth.users.values())


def test_names_with_spaces_apostrophes_and_non_ascii(facility):
    names = {n for n, in query(facility, "SELECT name FROM originalfile")}
    assert {"Zellkern Färbung 1.tif", "実験 2.ome.tiff", "Eve's cells 3.dv"} <= names
    assert query(facility, "SELECT count(*) FROM project WHERE name LIKE '%''%'")[0][0] >= 2
    managed = Path(facility.truth.managed_dir)
    assert list(managed.glob("alice_*/*/*/*/実験 2.ome.tiff"))
    assert list(managed.glob("alice_*/*/*/*/_slide 01_/stack1/frame_t_0.ets"))


def test_times_spread_over_years_and_event_ids_grow(facility):
    rows = query(facility, "SELECT id, time FROM event WHERE id > 0 ORDER BY id")
    times = [t for _, t in rows]
    assert times == sorted(times)
    assert times[-1].year - times[0].year >= 8
    # originalfile times are set and the files on disk carry the same mtime.
    unset = query(facility, "SELECT count(*) FROM originalfile WHERE mimetype NOT IN"
                            " ('Directory', 'Repository') AND (mtime IS NULL OR ctime IS NULL"
                            " OR atime IS NULL)")[0][0]
    assert unset == 0


def test_truth_save_load_and_totals(facility, tmp_path):
    truth = facility.truth
    path = truth.save(tmp_path / "truth.json")
    again = Truth.load(path)
    assert again == truth
    assert set(again.users) == set(truth.users) and all(isinstance(k, int) for k in again.users)
    totals = truth.collection_totals()
    keys = list(truth.collections)
    assert truth.union_bytes(keys) == sum(f["size"] for f in truth.all_files())
    assert truth.union_bytes(keys) < sum(t["bytes"] for t in totals.values())  # sharing
    missing = [a for a in truth.anomalies if a["kind"] == "missing"][0]
    key = missing["collections"][0]
    assert totals[key]["repo_bytes"] < totals[key]["bytes"]


# -- determinism ------------------------------------------------------------------------------

def test_same_seed_same_facility_other_seed_other(facility, pg_server, module_db_name, tmp_path):
    same_db = module_db_name[:56] + "_same"
    other_db = module_db_name[:56] + "_othr"
    try:
        same = generate_facility(create_omero_database(pg_server, same_db), tmp_path / "a", seed=1)
        other = generate_facility(create_omero_database(pg_server, other_db), tmp_path / "b",
                                  seed=2)
        assert same.normalized() == facility.truth.normalized()
        assert other.normalized() != facility.truth.normalized()
        # Same structure, different times, sizes and contents.
        assert set(other.collections) == set(same.collections)
        dump = "SELECT id, path, name, \"size\", hash FROM originalfile ORDER BY id"
        conn = pg_server.connect(same_db)
        with conn.cursor() as cur:
            cur.execute(dump.replace('path, ', ''))
            same_rows = cur.fetchall()
        conn.close()
        assert same_rows == query(facility, dump.replace('path, ', ''))
    finally:
        pg_server.drop_database(same_db)
        pg_server.drop_database(other_db)


# -- large mode ------------------------------------------------------------------------------

def test_generate_large_small_run(pg_server, module_db_name, tmp_path):
    name = module_db_name[:56] + "_big"
    dsn = create_omero_database(pg_server, name)
    try:
        summary = generate_large(dsn, tmp_path / "big", files=2_000, filesets=200, projects=20,
                                 screens=3, disk="sparse", seed=3)
        conn = pg_server.connect(name)
        with conn.cursor() as cur:
            def count(sql):
                cur.execute(sql)
                return cur.fetchone()[0]
            assert count("SELECT count(*) FROM filesetentry") == 2_000
            assert count("SELECT count(*) FROM fileset") == 200
            assert count("SELECT count(*) FROM project") == 20
            assert count("SELECT count(*) FROM screen") == 3
            assert count("SELECT count(*) FROM originalfile") == 2_200  # entries + logs
            assert count("SELECT count(*) FROM image") == summary["images"]
            assert count("SELECT count(*) FROM image i WHERE NOT EXISTS (SELECT 1 FROM"
                         " datasetimagelink l WHERE l.child = i.id) AND NOT EXISTS (SELECT 1"
                         " FROM wellsample w WHERE w.image = i.id)") == 0
            cur.execute('SELECT o.path || o.name, o."size" FROM originalfile o')
            files = cur.fetchall()
            # Sequences follow the loaded ids.
            cur.execute("SELECT ome_nextval('seq_originalfile'), max(id) FROM originalfile")
            nextval, top = cur.fetchone()
            assert nextval == top + 1
        conn.close()
        managed = Path(summary["managed_dir"])
        for path, size in files:
            assert (managed / path).stat().st_size == size
        assert sum(size for _, size in files) == summary["bytes"]
    finally:
        pg_server.drop_database(name)


def test_command_line_large_tiny(pg_server, module_db_name, tmp_path):
    name = module_db_name[:56] + "_cli"
    dsn = create_omero_database(pg_server, name)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "testbed.generator", "--dsn", dsn, "--root",
             str(tmp_path / "cli"), "--large", "--files", "300", "--filesets", "40",
             "--projects", "5", "--screens", "2", "--disk", "tiny"],
            cwd=REPO, capture_output=True, text=True, check=True)
        summary = json.loads(out.stdout)
        assert summary["rows"]["filesetentry"] == 300
        assert summary["rows"]["fileset"] == 40
        tiny = [p for p in Path(summary["managed_dir"]).rglob("*") if p.is_file()]
        assert len(tiny) == 340 and all(p.stat().st_size < 100 for p in tiny)
    finally:
        pg_server.drop_database(name)
