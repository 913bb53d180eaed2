"""catalog/referenced.py, and a restore that leaves out what OMERO deleted since the
purge (issue 19: decide from OMERO as it is at that moment, not from the app's rows)."""
import hashlib
import os
import stat

import psycopg2

from omero_storagemanager.catalog.referenced import gone_from_omero, object_of
from omero_storagemanager.engine.restore import restore_collection
from omero_storagemanager.models import Collection, PurgedFile
from testbed.omero_delete import delete_fileset
from tests.test_archive import world  # noqa: F401 (the fixture)


def test_each_shape_of_repository_path_names_its_omero_object():
    assert object_of("ManagedRepository/u_2/2020-01/01/10-00-00.000/a/b.tif") == \
        ("managed", "u_2/2020-01/01/10-00-00.000/a", "b.tif")
    assert object_of("Files/999") == ("file", 999)
    assert object_of("Files/Dir-001/1234") == ("file", 1234)
    assert object_of("Pixels/12") == ("pixels", 12)
    assert object_of("Pixels/Dir-001/Dir-234/1234567_pyramid") == ("pixels", 1234567)
    # Shapes it does not know are never called gone (a restore writes them back).
    for unknown in ("Thumbnails/12", "Files/12.tmp", "Pixels/12_pyramid.pyr_lock",
                    "ManagedRepository/x", "Files/../7", "Pixels/Dir-1/5", "Other/3"):
        assert object_of(unknown) is None, unknown


def test_every_file_of_the_facility_maps_back_to_its_own_row(world):
    files = [f for c in world.truth.collections.values() for f in c["files"]]
    assert {f["kind"] for f in files} >= {"fileset_entry", "import_log", "pyramid",
                                          "attachment"}
    for f in files:
        found = object_of(world.paths.relative(f["path"]))
        if f["kind"] == "pyramid_lock":
            assert found is None  # not a file of OMERO's rows: never called gone
        elif f["path"].startswith(world.paths.managed_dir + os.sep):
            assert found[0] == "managed" and os.path.join(
                world.paths.managed_dir, found[1], found[2]) == f["path"]
        elif f["kind"] in ("pyramid", "pixels"):
            assert found == ("pixels", f["pixels_id"]), f
        else:
            assert found == ("file", f["originalfile_id"]), f
    assert gone_from_omero(world.conn, [world.paths.relative(f["path"]) for f in files]) \
        == set()


def _delete_fileset_as_omero_does(world, fileset_id):
    """The rows, then the files (OMERO deletes both); returns the relpaths it deleted."""
    rw = psycopg2.connect(world.dsn)
    try:
        with rw, rw.cursor() as cur:
            cur.execute("SELECT p.id FROM pixels p JOIN image i ON i.id = p.image"
                        " WHERE i.fileset = %s", [fileset_id])
            pixels = {row[0] for row in cur.fetchall()}
            delete_fileset(cur, fileset_id)
    finally:
        rw.close()
    files = [f for c in world.truth.collections.values() for f in c["files"]
             if f.get("fileset_id") == fileset_id
             or (f["kind"] == "pyramid" and f["pixels_id"] in pixels)]
    for f in files:
        if os.path.lexists(f["path"]):
            os.unlink(f["path"])
    return {world.paths.relative(f["path"]) for f in files}


def _several_filesets(c):
    """Files of two filesets or more, none missing or odd (sharing is fine)."""
    return len({f["fileset_id"] for f in c["files"] if f["fileset_id"]}) >= 2 and not any(
        f["missing"] or f["symlink_target"] or "db_size" in f for f in c["files"])


def test_a_deleted_filesets_files_are_gone_from_omero_and_nothing_else(world):
    key = world.key_where(_several_filesets)
    fileset = min(f["fileset_id"] for f in world.truth.collections[key]["files"]
                  if f["fileset_id"])
    deleted = _delete_fileset_as_omero_does(world, fileset)
    assert deleted
    everything = {world.paths.relative(f["path"]) for c in world.truth.collections.values()
                  for f in c["files"]}
    assert gone_from_omero(world.conn, everything) == deleted


def test_a_restore_leaves_out_what_omero_deleted_since_the_purge(world):
    key = world.key_where(_several_filesets)
    by_path = {f["path"]: f for f in world.truth.collections[key]["files"]}
    before = world.files(key)
    world.archive(key, world.location("hdd"))
    plan = world.purge(key)
    freed = {c.record.path for c in plan.freed}
    filesets = sorted({by_path[p]["fileset_id"] for p in freed if by_path[p]["fileset_id"]})
    assert len(filesets) >= 2, f"{key}: the purge freed files of {filesets} only"
    deleted = _delete_fileset_as_omero_does(world, filesets[0])
    kept = {p for p in freed if world.paths.relative(p) not in deleted}
    assert kept and len(freed) > len(kept)
    said = []
    result = restore_collection(world.collection(key), world.gateway, log=said.append,
                                paths=world.paths, conn=world.conn)
    assert result.not_in_omero == len(freed) - len(kept)
    assert result.restored == len(kept)
    for path in freed - kept:
        assert not os.path.lexists(path), f"{path}: deleted in OMERO, then written back"
    for path in kept:
        with open(path, "rb") as fh:
            sha1 = hashlib.sha1(fh.read()).hexdigest()
        assert (sha1, stat.S_IMODE(os.lstat(path).st_mode)) == before[path], path
    assert not PurgedFile.objects.filter(relpath__in=deleted).exists()
    assert not PurgedFile.objects.exclude(state=PurgedFile.RESTORED).exists()
    assert world.collection(key).state == Collection.ARCHIVED
    assert any("deleted in OMERO since the purge" in line for line in said), said
