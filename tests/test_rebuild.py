"""Rebuild (issue 20): a lost app database comes back from the bags on the locations.

A full cycle on the generated facility (archive, audit, purge one collection with the
archive user and group, archive another twice: an incremental copy), every row that
matters recorded by its natural key, the app's tables dropped with its migrations and
migrated again, rebuild, then the same rows compared, and the purged collection
restored from the rebuilt database with its bytes back. Also: a bag from before the
purge records (inferred from OMERO and the repository), bags that are not complete
(never trusted), running it twice, a database that is not empty refused.
"""
import json
import os
import shutil
from pathlib import Path

import psycopg2
import pytest
from django.core.management import call_command

from omero_storagemanager.catalog.collections import parse_key
from omero_storagemanager.engine import purgetags
from omero_storagemanager.engine.locations import audit, remove_location, rescan
from omero_storagemanager.engine.rebuild import RebuildRefused, rebuild
from omero_storagemanager.verbs.rebuild import summary
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.models import (Collection, Copy, CopyFile, Location,
                                         PrimaryFile, PurgedFile, RepositoryRoot)
from tests.test_cli import facility_omerodir, run_cli
from tests.test_archive import World, world_of
from tests.test_rescan import clean_keys


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(World, "rebu_", pg_server, tmp_path, request)


def _ids(world):
    users = {u["omename"]: int(uid) for uid, u in world.truth.users.items()}
    hcs = next(int(g) for g, v in world.truth.groups.items() if v["name"] == "HCS Screening")
    return users["farid"], hcs


def snapshot():
    """Every row that matters, by natural keys (ids may differ after a rebuild)."""
    def copy_key(copy):
        return (copy.location_id, copy.bag_path)

    copies = {}
    for c in Copy.objects.select_related("collection", "parent"):
        copies[copy_key(c)] = (c.collection.key, c.state, c.files, c.bytes, c.created,
                               c.parent and copy_key(c.parent))
        # (created may be a second ahead: archive.py never reuses a bag's name)
        assert c.verified_at is not None and c.state != Copy.WRITING
    return {
        "locations": {(loc.pk, loc.name, loc.type, loc.mount, loc.marker, loc.max_bytes,
                       loc.purge_watermark, loc.current) for loc in Location.objects.all()},
        "collections": {c.key: (c.state, c.name, c.owner_id, c.owner_name, c.group_id,
                                c.group_name, c.original_name, c.original_owner_id,
                                c.original_group_id, c.gone)
                        for c in Collection.objects.all()},
        "roots": {(r.path, r.device, r.marker) for r in RepositoryRoot.objects.all()},
        "copies": copies,
        "files": {copy_key(f.copy) + (f.relpath,): (f.size, f.checksum, f.algorithm, f.mode,
                                                    f.verified, f.source_mtime_ns)
                  for f in CopyFile.objects.select_related("copy")},
        "primaries": {p.relpath: (*p.identity(), p.sha1) for p in PrimaryFile.objects.all()},
        "purged": {(p.collection.key, p.path): (p.relpath, p.size, p.sha1, p.mode, p.linked,
                                                p.state, copy_key(p.copy_file.copy),
                                                p.copy_file.relpath)
                   for p in PurgedFile.objects.select_related("collection", "copy_file__copy")
                   .exclude(state=PurgedFile.RESTORED)},
    }


def same(after, before):
    """after == before, naming the rows that differ when not."""
    for part in before:
        diff = {k: (after[part].get(k), v) for k, v in before[part].items()
                if after[part].get(k) != v} if isinstance(before[part], dict) else (
            after[part] ^ before[part])
        if part == "primaries":  # a primary not given back is read by the next purge;
            diff = {k: d for k, d in diff.items() if d[0] is not None}  # a wrong one: never
        extra = set(after[part]) - set(before[part])
        assert not diff and not extra, (part, diff, extra)
    return True


def lose_the_database():
    """The app's tables gone and made again by its migrations, as on a new server."""
    call_command("migrate", "storagemanager", "zero", verbosity=0, interactive=False)
    call_command("migrate", verbosity=0, interactive=False)
    assert not Location.objects.exists() and not Copy.objects.exists()


def full_cycle(world, type="hdd"):
    """Archive and audit two collections (one twice: incremental), purge the first
    moved to the archive user and group; returns (purged key, archived key, mount,
    the purged collection's files before the purge)."""
    purged, archived = clean_keys(world, 2)
    disk = world.location(type, name="Disk 1")
    world.archive(purged, disk)
    world.archive(archived, disk)
    changed = next(f["path"] for f in world.truth.collections[archived]["files"]
                   if f["kind"] == "pixels") if any(
        f["kind"] == "pixels" for f in world.truth.collections[archived]["files"]) else None
    if changed:  # an incremental copy chained to the first
        with open(changed, "r+b") as fh:
            fh.write(b"\x07")
        os.utime(changed, (1.7e9, 1.7e9))
        world.archive(archived, disk)
    assert audit(disk).failed == []
    files = world.files(purged)
    user, group = _ids(world)
    world.purge(purged, rename=True, archive_user_id=user, archive_group_id=group)
    assert world.collection(purged).state == Collection.PURGED
    sync_collections(world.conn)  # the names OMERO shows now ("(archived) ...")
    return purged, archived, disk.mount, files


def bag_dirs(mount):
    return sorted(p.parent for p in Path(mount).glob("*/write/*/*/*/*/*/bagit.txt"))


@pytest.mark.parametrize("type", ["hdd", "symlink", "tape"])
def test_a_lost_database_comes_back_from_the_bags_and_restores(world, type):
    purged, archived, mount, files = full_cycle(world, type)
    before = snapshot()
    assert before["purged"] and len(before["copies"]) >= 2
    # Symlink: the purge left links into the copy, which the rebuild recognises.
    assert {linked for _, _, _, _, linked, *_ in before["purged"].values()} == {
        type == "symlink"}
    tagged = [b for b in bag_dirs(mount) if (b / purgetags.TAG_FILE).exists()]
    assert len(tagged) == 1  # the bag the purge relied on carries its records

    lose_the_database()
    report = rebuild(world.conn, world.paths, [mount], log=lambda _: None)
    text = "\n".join(summary(report))
    assert report.decided, text
    assert report.purged_from_bags == len(before["purged"]) and report.purged_inferred == 0
    assert same(snapshot(), before)
    # Every primary still online is known again as it was copied: no purge re-reads it.
    assert before["primaries"] and snapshot()["primaries"] == before["primaries"]
    assert "added back from its marker (its settings file)" in text

    # Idempotent: a second run refuses, and with --merge adds nothing.
    with pytest.raises(RebuildRefused, match="--merge"):
        rebuild(world.conn, world.paths, [mount])
    again = rebuild(world.conn, world.paths, [mount], merge=True, log=lambda _: None)
    assert (again.copies_added, again.purged_from_bags, again.purged_inferred) == (0, 0, 0)
    assert again.copies_known == len(before["copies"]) and snapshot() == before
    # A location added now gets a new id, not the one taken back.
    new = world.location("hdd", name="Disk 2")
    assert new.pk > max(pk for pk, *_ in before["locations"])

    # The purged collection restored from the rebuilt database: its bytes are back,
    # and OMERO gives it back to its owner.
    world.restore(purged)
    assert world.files(purged) == files
    row = world.collection(purged)
    assert row.state == Collection.ARCHIVED and row.original_owner_id is None
    kind, oid = parse_key(purged)
    now = world.gateway.describe(kind, oid)
    assert (now["owner_id"], now["group_id"]) == (before["collections"][purged][2],
                                                  before["collections"][purged][4])
    # The bag forgot the records of what came back.
    assert purgetags.read(tagged[0]).files == []


def test_a_bag_from_before_purge_records_is_inferred_and_said_so(world):
    purged, archived, mount, files = full_cycle(world)
    before = snapshot()
    for bag in bag_dirs(mount):  # as written before this change
        (bag / purgetags.TAG_FILE).unlink(missing_ok=True)

    lose_the_database()
    report = rebuild(world.conn, world.paths, [mount], log=lambda _: None)
    assert report.decided, summary(report)
    assert report.purged_from_bags == 0
    assert report.purged_inferred == len(before["purged"])
    assert report.inferred_collections == [purged]
    assert "inferred" in "\n".join(summary(report))
    assert same(snapshot(), before)
    world.restore(purged)
    assert world.files(purged) == files


def test_a_damaged_record_file_is_named_and_its_records_inferred(world):
    purged, archived, mount, files = full_cycle(world)
    before = snapshot()
    [bag] = [b for b in bag_dirs(mount) if (b / purgetags.TAG_FILE).exists()]
    tag = bag / purgetags.TAG_FILE
    lines = tag.read_text().splitlines()
    # A record asking for a set-user-id file: never taken from a bag.
    record = {**json.loads(lines[-1]), "mode": 0o4755}
    tag.write_text("\n".join(lines[:-1] + [json.dumps(record)]) + "\n")
    with pytest.raises(purgetags.TagError, match="mode 2541"):
        purgetags.read(bag)

    lose_the_database()
    report = rebuild(world.conn, world.paths, [mount], log=lambda _: None)
    assert not report.decided and purgetags.TAG_FILE in report.undecided[0]
    assert report.purged_inferred == len(before["purged"])
    assert same(snapshot(), before)


def test_a_collection_deleted_in_omero_comes_back_gone_from_its_bag_info(world):
    key = clean_keys(world, 1)[0]
    disk = world.location("hdd", name="Disk 1")
    world.archive(key, disk)
    kind, oid = parse_key(key)
    with psycopg2.connect(world.dsn) as writer, writer.cursor() as cur:
        for table in (f"{kind}datasetlink" if kind == "project" else "screenplatelink",
                      f"{kind}annotationlink"):
            cur.execute(f"DELETE FROM {table} WHERE parent = %s", [oid])
        cur.execute(f"DELETE FROM {kind} WHERE id = %s", [oid])
    writer.close()
    sync_collections(world.conn)
    before = snapshot()
    assert before["collections"][key][-1] is True  # gone, its copy kept

    lose_the_database()
    report = rebuild(world.conn, world.paths, [disk.mount], log=lambda _: None)
    assert report.decided, summary(report)
    assert same(snapshot(), before)


class Killed(BaseException):
    """Stands for the process killed there (no handler catches a BaseException)."""


@pytest.mark.parametrize("where", ["register_bag", "records_from_tags", "inferred_records",
                                   "_settle_collections"])
def test_a_rebuild_killed_half_way_is_completed_by_merge(world, monkeypatch, where):
    from omero_storagemanager.engine import rebuild as rebuild_module
    from omero_storagemanager.engine import rebuildpurges

    purged, archived, mount, files = full_cycle(world)
    before = snapshot()
    lose_the_database()
    module = rebuildpurges if where in ("records_from_tags", "inferred_records") \
        else rebuild_module
    real, calls = getattr(module, where), []

    def dies(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 or where != "register_bag":  # the second bag, else at once
            raise Killed()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, where, dies)
    with pytest.raises(Killed):
        rebuild(world.conn, world.paths, [mount], log=lambda _: None)
    monkeypatch.setattr(module, where, real)
    report = rebuild(world.conn, world.paths, [mount], merge=True, log=lambda _: None)
    assert report.decided, summary(report)
    assert same(snapshot(), before)


def test_bags_that_are_not_complete_are_never_trusted(world):
    purged, archived, mount, files = full_cycle(world)
    before = snapshot()
    [bag] = [b for b in bag_dirs(mount) if (b / purgetags.TAG_FILE).exists()]
    # A second archive killed while writing, and a bag that lost its bagit.txt.
    shutil.copytree(bag, bag.with_name("01-01-2030_000000.partial"))
    broken = bag.with_name("02-01-2030_000000")
    shutil.copytree(bag, broken)
    (broken / "bagit.txt").unlink()
    # The bag the purge relied on lost a payload file: registered, not trusted.
    victim = next(p for p in (bag / "data").rglob("*") if p.is_file())
    victim.unlink()

    lose_the_database()
    report = rebuild(world.conn, world.paths, [mount], log=lambda _: None)
    paths = {c.bag_path for c in Copy.objects.all()}
    assert not any(p.endswith((".partial", "02-01-2030_000000")) for p in paths)
    assert paths == {bag_path for _, bag_path in before["copies"]}
    relied = Copy.objects.get(bag_path=str(bag.relative_to(bag.parents[4])))
    assert relied.state == Copy.FAILED_AUDIT
    assert not CopyFile.objects.filter(copy=relied, verified=True).exists()
    assert report.copies_failed and "failed" in "\n".join(summary(report))
    # Its purge records still point at it (restore tries a failed copy last).
    assert PurgedFile.objects.filter(copy_file__copy=relied).count() == len(before["purged"])


def test_an_unmounted_repository_decides_no_purge_then_merge_completes(world):
    purged, archived, mount, files = full_cycle(world)
    before = snapshot()
    marker = Path(world.paths.data_dir, ".omero-storagemanager")
    aside = marker.with_name("marker-aside")
    marker.rename(aside)  # as if the share were not mounted: a bare mount point

    lose_the_database()
    report = rebuild(world.conn, world.paths, [mount], log=lambda _: None)
    assert not report.decided and "is it mounted" in "\n".join(report.undecided)
    assert not PurgedFile.objects.exists()
    assert world.collection(purged).state != Collection.PURGED
    assert report.copies_added == len(before["copies"])

    aside.rename(marker)  # mounted again: --merge adds what was left
    report = rebuild(world.conn, world.paths, [mount], merge=True, log=lambda _: None)
    assert report.decided, summary(report)
    assert report.copies_added == 0 and report.purged_from_bags == len(before["purged"])
    assert same(snapshot(), before)


def test_bags_relied_on_after_a_location_is_removed_carry_the_records(world):
    purged, archived, mount, files = full_cycle(world)
    before = snapshot()
    old = Location.objects.get()
    big = world.location("hdd", name="Big disk")
    shutil.copytree(Path(mount, str(old.pk), "write"), Path(big.mount, str(big.pk), "write"),
                    dirs_exist_ok=True)
    for bag in bag_dirs(big.mount):  # copied without the records, as rsync --exclude would
        (bag / purgetags.TAG_FILE).unlink(missing_ok=True)
    rescan(big)
    old_root = Path(mount, str(old.pk))
    remove_location(old)
    shutil.rmtree(old_root)
    [tagged] = [b for b in bag_dirs(big.mount) if (b / purgetags.TAG_FILE).exists()]
    assert len(purgetags.read(tagged).files) == len(before["purged"])

    lose_the_database()
    report = rebuild(world.conn, world.paths, [big.mount], log=lambda _: None)
    assert report.decided, summary(report)
    assert report.purged_from_bags == len(before["purged"]) and report.purged_inferred == 0
    world.restore(purged)
    assert world.files(purged) == files


@pytest.mark.parametrize("records", ["in the bags", "inferred"])
def test_collections_purged_together_come_back_each_with_its_records(world, records):
    first, second = _shared_pair(world)
    disk = world.location("hdd", name="Disk 1")
    for key in (first, second):
        world.archive(key, disk)
    for key in (first, second):  # as the purge job does: one after the other, along
        world.purge(key, along_with={first, second}, rename=True)

    def lose_and_rebuild():
        sync_collections(world.conn)
        before = snapshot()
        if records == "inferred":
            for bag in bag_dirs(disk.mount):
                (bag / purgetags.TAG_FILE).unlink(missing_ok=True)
        lose_the_database()
        report = rebuild(world.conn, world.paths, [disk.mount], log=lambda _: None)
        assert report.decided, summary(report)
        assert same(snapshot(), before)
        return before

    before = lose_and_rebuild()
    shared = [path for key, path in before["purged"] if key == second
              and (first, path) in before["purged"]]
    assert shared  # each holder has its own record of each shared file
    # Restoring one brings the shared files back for both; rebuilt again, the same.
    world.restore(second)
    assert all(os.path.exists(path) for path in shared)
    lose_and_rebuild()


def _shared_pair(world):
    """Two collections of one kind sharing a file, each purgeable with the other."""
    for key, c in world.truth.collections.items():
        for f in c["files"]:
            others = [o for o in f["shared_with"] if o.split(":")[0] == key.split(":")[0]]
            if others and not f["missing"] and not f["symlink_target"]:
                return key, others[0]
    pytest.fail("the generated facility has no two collections sharing a file")


def test_the_console_script_refuses_a_full_database_reports_and_says_when_undecided(
        world, pg_server, tmp_path):
    """`omero-storagemanager rebuild`, the real console script with OMERO.web's settings."""
    omerodir = facility_omerodir(tmp_path / "omerodir", pg_server, world)
    purged, archived, mount, files = full_cycle(world)
    before = snapshot()
    proc = run_cli("rebuild", "--location", mount, omerodir=omerodir)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "already holds" in proc.stderr and "--merge" in proc.stderr

    lose_the_database()
    proc = run_cli("rebuild", "--location", mount, omerodir=omerodir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"purge records: {len(before['purged'])} from the bags' records" in proc.stdout
    assert "everything found was decided" in proc.stdout
    assert len(proc.stdout.splitlines()) < 25  # one screen
    assert same(snapshot(), before)
    proc = run_cli("rebuild", "--location", mount, "--merge", omerodir=omerodir)
    assert proc.returncode == 0 and "copies registered: 0" in proc.stdout, proc.stdout

    # Something it cannot decide: a bag whose bag-info names no collection. Exit 1.
    bag = bag_dirs(mount)[0]
    odd = bag.with_name("03-01-2030_000000")
    shutil.copytree(bag, odd)
    (odd / "bag-info.txt").write_text("Source-Organization: elsewhere\n")
    proc = run_cli("rebuild", "--merge", omerodir=omerodir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NOT DECIDED (1)" in proc.stdout and "names no Project or Screen" in proc.stdout
    assert same(snapshot(), before)  # and nothing was added
