"""Purge and restore decide from what is on disk and in OMERO now (issue 19).

One test per finding: a copy deleted or damaged on the location after archiving, a
primary file rewritten, replaced or hard-linked after it was copied, a directory of the
repository replaced by a symbolic link, holders that appear while a purge runs, joint
purges of collections sharing files, empty collections, exact mtimes. Each failed on
the code before the fix (the purge trusted its CopyFile rows and OMERO's checksum).
"""
import hashlib
import os
import threading
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from omero_storagemanager.catalog.collections import parse_key
from omero_storagemanager.engine import purgecheck
from omero_storagemanager.engine.archive import ArchiveError
from omero_storagemanager.engine.purge import ARCHIVED_PREFIX, PurgeError, plan_purge
from omero_storagemanager.models import Collection, Copy, CopyFile, PrimaryFile, PurgedFile
from tests.test_archive import clean, world  # noqa: F401 (the fixture)


def _sha1(path):
    with open(path, "rb") as fh:
        return hashlib.sha1(fh.read()).hexdigest()


def _bag_file(location, copy, relpath):
    return os.path.join(location.mount, str(location.pk), "write", copy.bag_path, "data",
                        relpath)


def _archived(world, predicate=clean, size=1):
    """An archived clean collection and one of its non-empty files."""
    key = world.key_where(lambda c: predicate(c) and any(
        (f["size"] or 0) >= size and f["kind"] != "pyramid" for f in c["files"]))
    location = world.location("hdd")
    world.archive(key, location)
    victim = next(f["path"] for f in world.truth.collections[key]["files"]
                  if (f["size"] or 0) >= size and f["kind"] != "pyramid")
    return key, location, victim


def test_a_copy_deleted_on_the_location_keeps_the_primary(world):
    key, location, victim = _archived(world)
    copy = Copy.objects.get(location=location)
    relpath = world.paths.relative(victim)
    os.unlink(_bag_file(location, copy, relpath))  # deleted by hand on the archive disk
    before = _sha1(victim)
    plan = world.purge(key)
    assert victim in dict(plan.blocked) and "missing" in dict(plan.blocked)[victim]
    assert _sha1(victim) == before
    assert world.collection(key).state == Collection.PARTIALLY_PURGED


def test_a_damaged_copy_keeps_the_primary(world):
    key, location, victim = _archived(world)
    copy = Copy.objects.get(location=location)
    bag_file = _bag_file(location, copy, world.paths.relative(victim))
    with open(bag_file, "r+b") as fh:  # same size, one bit flipped: only a read tells
        byte = fh.read(1)
        fh.seek(0)
        fh.write(bytes([byte[0] ^ 0x01]))
    plan = world.purge(key)
    assert "damaged" in dict(plan.blocked)[victim]
    assert os.path.exists(victim)


def test_a_primary_rewritten_in_place_with_its_mtime_set_back_is_kept(world):
    key, location, victim = _archived(world)
    st = os.stat(victim)
    with open(victim, "r+b") as fh:  # a tool writing in place (rsync --inplace -t)
        byte = fh.read(1)
        fh.seek(0)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as before
    new_bytes = _sha1(victim)
    plan = world.purge(key)
    assert "changed since it was archived" in dict(plan.blocked)[victim]
    assert _sha1(victim) == new_bytes  # its new bytes are in no copy: kept


def test_a_primary_replaced_by_a_reimport_is_kept(world):
    key, location, victim = _archived(world)
    size = os.path.getsize(victim)
    os.unlink(victim)
    with open(victim, "wb") as fh:  # another file, same name and size
        fh.write(b"\x5a" * size)
    plan = world.purge(key)
    assert "changed since it was archived" in dict(plan.blocked)[victim]
    assert open(victim, "rb").read() == b"\x5a" * size


def test_a_primary_rewritten_between_the_plan_and_the_delete_is_kept(world, monkeypatch):
    key, location, victim = _archived(world)
    real = purgecheck.check_copy_content

    def meanwhile(copy_at, root, rel, sample_above):
        problem = real(copy_at, root, rel, sample_above)
        if os.path.exists(victim):  # after the plan, before the delete: a user rewrites it
            with open(victim, "ab") as fh:
                fh.write(b"new data")
        return problem

    monkeypatch.setattr(purgecheck, "check_copy_content", meanwhile)
    plan = world.purge(key)
    assert victim in dict(plan.blocked) and os.path.exists(victim)
    assert open(victim, "rb").read().endswith(b"new data")


def test_a_hard_linked_primary_is_kept(world):
    key, location, victim = _archived(world)
    os.link(victim, victim + ".second-name")
    plan = world.purge(key)
    assert "hard-linked" in dict(plan.blocked)[victim]
    assert os.path.exists(victim)


def test_a_directory_replaced_by_a_symlink_is_never_followed(world, tmp_path):
    key, location, victim = _archived(world)
    folder = os.path.dirname(victim)
    outside = tmp_path / "elsewhere"
    os.rename(folder, outside)  # an admin moved the folder and left a link
    os.symlink(outside, folder)
    names = sorted(os.listdir(outside))
    plan = world.purge(key)
    assert sorted(os.listdir(outside)) == names  # nothing deleted through the link
    kept = dict(plan.blocked)
    assert victim in kept and "symbolic link" in kept[victim]


def test_a_holder_linked_while_the_purge_runs_keeps_the_file(world, monkeypatch):
    key = world.key_where(lambda c: clean(c) and c["kind"] == "project")
    location = world.location("hdd")
    world.archive(key, location)
    kind, oid = parse_key(key)
    other = world.key_where(lambda c: c["kind"] == "project" and c is not
                            world.truth.collections[key])
    writer = psycopg2.connect(world.dsn)
    real = purgecheck.check_copy_content
    linked, once = [], threading.Lock()  # the checks run in threads

    def meanwhile(copy_at, root, rel, sample_above):
        with once:
            if not linked:  # a user links the Dataset into a second Project now
                _link_dataset(writer, oid, parse_key(other)[1], linked)
        return real(copy_at, root, rel, sample_above)

    monkeypatch.setattr(purgecheck, "check_copy_content", meanwhile)
    try:
        plan = world.purge(key)
    finally:
        writer.close()
    assert linked and plan.blocked
    assert any(other in reason for _, reason in plan.blocked)
    for path, _ in plan.blocked:
        assert os.path.exists(path)


def _link_dataset(writer, project, other_project, linked):
    with writer, writer.cursor() as cur:
        cur.execute("SELECT * FROM projectdatasetlink WHERE parent = %s LIMIT 1",
                    [project])
        columns = [d.name for d in cur.description]
        row = dict(zip(columns, cur.fetchone()))
        dataset = row["child"]
        row.update(id=10**9, parent=other_project)
        cur.execute(f"INSERT INTO projectdatasetlink ({', '.join(row)}) VALUES "
                    f"({', '.join(['%s'] * len(row))})", list(row.values()))
    linked.append(dataset)


def _shared_pair(world):
    """Two collections of one kind sharing a file, each purgeable with the other."""
    for key, c in world.truth.collections.items():
        for f in c["files"]:
            others = [o for o in f["shared_with"] if o.split(":")[0] == key.split(":")[0]]
            if others and not f["missing"] and not f["symlink_target"]:
                return key, others[0]
    pytest.fail("the generated facility has no two collections sharing a file")


def test_joint_purge_gives_every_holder_its_purged_state_and_restore_keeps_them_true(world):
    first, second = _shared_pair(world)
    location = world.location("hdd")
    for key in (first, second):
        world.archive(key, location)
    along = {first, second}
    names = {k: world.collection(k).name for k in along}
    for key in (first, second):  # as the purge job does: one after the other, along
        world.purge(key, along_with=along, rename=True)
    shared = {f["path"] for f in world.truth.collections[first]["files"]
              if second in f["shared_with"]}
    assert shared and not any(os.path.exists(p) for p in shared)
    for key in along:
        collection = world.collection(key)
        assert collection.state in (Collection.PURGED, Collection.PARTIALLY_PURGED), key
        kind, oid = parse_key(key)
        assert world.gateway.describe(kind, oid)["name"] == ARCHIVED_PREFIX + names[key]
        assert PurgedFile.objects.filter(collection=collection, path__in=shared,
                                         state=PurgedFile.PURGED).count() == len(shared)
    result = world.restore(second)
    assert result.restored >= len(shared)
    assert all(os.path.exists(p) for p in shared)
    assert world.collection(second).state == Collection.ARCHIVED
    # The first holder's shared files are back too: its rows say so, and its state.
    assert not PurgedFile.objects.filter(collection=world.collection(first), path__in=shared
                                         ).exclude(state=PurgedFile.RESTORED).exists()
    still_purged = PurgedFile.objects.filter(collection=world.collection(first),
                                             state=PurgedFile.PURGED).exists()
    assert world.collection(first).state == (
        Collection.PARTIALLY_PURGED if still_purged else Collection.ARCHIVED)
    world.restore(first)
    assert world.collection(first).state == Collection.ARCHIVED
    for key in along:
        kind, oid = parse_key(key)
        assert world.gateway.describe(kind, oid)["name"] == names[key]


def _empty_project(world):
    writer = psycopg2.connect(world.dsn)
    with writer, writer.cursor() as cur:
        cur.execute("SELECT * FROM project LIMIT 1")
        columns = [d.name for d in cur.description]
        row = dict(zip(columns, cur.fetchone()))
        row.update(id=10**9, name="empty")
        cur.execute(f"INSERT INTO project ({', '.join(row)}) VALUES "
                    f"({', '.join(['%s'] * len(row))})", list(row.values()))
    writer.close()
    from omero_storagemanager.engine.sync import sync_collections

    sync_collections(world.conn)
    return world.collection(f"Project:{10**9}")


def test_an_empty_collection_cannot_be_purged(world):
    empty = _empty_project(world)
    with pytest.raises(PurgeError, match="holds no files"):
        plan_purge(world.conn, world.paths, empty)
    with pytest.raises(PurgeError, match="holds no files"):
        world.purge(empty.key)
    assert world.collection(empty.key).state == empty.state


def test_an_empty_collection_is_not_called_archived(world):
    empty = _empty_project(world)
    with pytest.raises(ArchiveError, match="holds no files"):
        world.archive(empty.key, world.location("hdd"))
    assert world.collection(empty.key).state == Collection.ONLINE
    assert not Copy.objects.filter(collection=empty).exists()


def test_a_nearline_copy_counts_only_with_a_recent_audit(world):
    key = world.key_where(clean)
    location = world.location("tape", max_bytes=10**9)
    world.archive(key, location)
    copy = Copy.objects.get(location=location)
    id_dir = os.path.join(location.mount, str(location.pk))
    os.rename(id_dir, id_dir + ".away")  # the tape library's share is not mounted
    plan = plan_purge(world.conn, world.paths, world.collection(key))
    assert not plan.freed and all("cannot be read now" in r for _, r in plan.blocked)
    Copy.objects.filter(pk=copy.pk).update(last_audit=datetime.now(timezone.utc),
                                           last_audit_ok=True)
    plan = plan_purge(world.conn, world.paths, world.collection(key))
    assert plan.freed and plan.audited == len(plan.freed) and plan.read_bytes == 0
    Copy.objects.filter(pk=copy.pk).update(
        last_audit=datetime.now(timezone.utc) - timedelta(days=31))
    plan = plan_purge(world.conn, world.paths, world.collection(key), audit_max_age_days=30)
    assert not plan.freed


def test_the_dry_run_says_how_much_the_checks_will_read(world):
    key, location, victim = _archived(world)
    plan = plan_purge(world.conn, world.paths, world.collection(key))
    copies = {e.relpath: e.size for e in CopyFile.objects.filter(copy__location=location)}
    assert plan.read_bytes == sum(copies[c.relpath] for c in plan.freed)
    assert os.path.exists(victim)  # nothing read or changed: stats only


def test_restore_gives_back_mtimes_to_the_nanosecond_and_records_the_files(world):
    key = world.key_where(clean)
    before = world.files(key)
    for i, path in enumerate(before):
        os.utime(path, ns=(1_700_000_000_123_456_789 + i, 1_700_000_000_987_654_321 + i))
    mtimes = {p: os.stat(p).st_mtime_ns for p in before}
    location = world.location("hdd")
    world.archive(key, location)
    world.purge(key)
    world.restore(key)
    assert {p: os.stat(p).st_mtime_ns for p in before} == mtimes
    for path in before:  # what purge will check next time: the restored file itself
        st = os.lstat(path)
        known = PrimaryFile.objects.get(relpath=world.paths.relative(path))
        assert known.identity() == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                    st.st_ctime_ns)
    plan = plan_purge(world.conn, world.paths, world.collection(key))
    assert not plan.blocked  # purgeable again without a new archive


def _copy_row(cur, table, where, **changes):
    """Insert a copy of one row of an OMERO table with some columns changed."""
    cur.execute(f"SELECT * FROM {table} WHERE {where} LIMIT 1")
    columns = [d.name for d in cur.description]
    row = dict(zip(columns, cur.fetchone()))
    row.update(changes)
    cur.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES "
                f"({', '.join(['%s'] * len(row))})", list(row.values()))
    return row


def test_holders_outside_every_collection_keep_the_file(world):
    """An image of the fileset in no Dataset, and the Project's attachment also on an
    Image in no Dataset: holders that no purge of ours ever purges."""
    key = world.key_where(lambda c: clean(c) and c["kind"] == "project" and any(
        f["kind"] == "fileset_entry" for f in c["files"]))
    location = world.location("hdd")
    world.archive(key, location)
    entry = next(f for f in world.truth.collections[key]["files"]
                 if f["kind"] == "fileset_entry")
    writer = psycopg2.connect(world.dsn)
    with writer, writer.cursor() as cur:
        cur.execute("SELECT fileset FROM filesetentry fe JOIN originalfile o "
                    "ON o.id = fe.originalfile WHERE o.name = %s", [os.path.basename(
                        entry["path"])])
        fileset = cur.fetchone()[0]
        _copy_row(cur, "image", f"fileset = {int(fileset)}", id=10**9)  # in no Dataset
    writer.close()
    plan = world.purge(key)
    kept = dict(plan.blocked)
    assert "Image:1000000000 (orphaned)" in kept[entry["path"]]
    assert os.path.exists(entry["path"])
