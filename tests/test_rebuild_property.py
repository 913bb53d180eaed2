"""Rebuild gives back the same rows after any sequence of archives, incremental
archives, purges and restores (a Hypothesis property, issue 20).

Each example is a whole story on its own generated facility (its own OMERO-shaped
database and repository) and an empty app database: the operations run through the
engine as the jobs run them (an operation the engine refuses, such as restoring what
was never purged, is part of the story and changes nothing), then the app's tables are
emptied as on a new server, rebuilt from the location's bags, and every row that
matters must be as before (tests/test_rebuild.py snapshot, by natural keys).
"""
import itertools
import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from omero_storagemanager.engine.archive import ArchiveError
from omero_storagemanager.engine.purge import PurgeError
from omero_storagemanager.engine.rebuild import rebuild
from omero_storagemanager.engine.restore import RestoreError
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.verbs.rebuild import summary
from tests.test_archive import World
from tests.test_rebuild import same, snapshot
from tests.test_rescan import clean_keys

_EXAMPLES = itertools.count()
SEEN = []  # per example: (purge records before the rebuild, copies): the stories told
OPERATIONS = st.lists(st.tuples(st.sampled_from(["archive", "change", "purge", "restore"]),
                                st.integers(0, 1)), min_size=1, max_size=6)


def _empty_app_tables(connection):
    from django.apps import apps

    tables = [m._meta.db_table for m in apps.get_app_config("storagemanager").get_models()]
    with connection.cursor() as cur:
        cur.execute("TRUNCATE {} RESTART IDENTITY CASCADE".format(
            ", ".join('"%s"' % t for t in tables)))


def _change(world, key):
    """A file OMERO keeps no checksum of rewritten: the next archive copies it anew."""
    for f in world.truth.collections[key]["files"]:
        if f["kind"] == "pixels" and os.path.isfile(f["path"]) \
                and not os.path.islink(f["path"]):
            with open(f["path"], "r+b") as fh:
                fh.write(os.urandom(1))
            os.utime(f["path"], ns=(1_700_000_000_000_000_000,) * 2)
            return


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(operations=OPERATIONS)
# Stories that always run, whatever Hypothesis draws (twelve random ones may tell none
# with purge records or an incremental copy): archived, changed and archived again
# (an incremental copy), purged; and a purge, restore and purge again.
@example(operations=[("archive", 0), ("change", 0), ("purge", 0), ("archive", 1)])
@example(operations=[("archive", 1), ("purge", 1), ("restore", 1), ("purge", 1)])
def test_rebuild_gives_back_every_row_after_any_history(pg_server, app_db,
                                                        tmp_path_factory, operations):
    name = f"rebp_{next(_EXAMPLES)}"
    _empty_app_tables(app_db)
    world = World(pg_server, name, tmp_path_factory.mktemp(name))
    try:
        keys = clean_keys(world, 2)
        disk = world.location("hdd", name="Disk 1")
        for op, which in operations:
            key = keys[which]
            try:
                if op == "archive":
                    world.archive(key, disk)
                elif op == "change":
                    _change(world, key)
                    world.archive(key, disk)
                elif op == "purge":
                    world.purge(key, rename=True)
                else:
                    world.restore(key)
            except (ArchiveError, PurgeError, RestoreError):
                pass  # refused: nothing changed
        sync_collections(world.conn)
        before = snapshot()
        mount = disk.mount
        SEEN.append((len(before["purged"]), len(before["copies"])))

        _empty_app_tables(app_db)
        report = rebuild(world.conn, world.paths, [mount], log=lambda _: None)
        assert report.decided, "\n".join(summary(report))
        assert same(snapshot(), before), operations
    finally:
        world.conn.close()
        pg_server.drop_database(name)


def test_the_property_told_stories_with_purges_and_incremental_copies():
    """The property ran on histories that matter: some with purge records to give back,
    some with several copies (incremental). Runs after it (pytest keeps the order)."""
    assert any(purged for purged, _ in SEEN), SEEN
    assert any(copies >= 2 for _, copies in SEEN), SEEN
