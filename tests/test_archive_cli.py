"""The archive verbs of the admin's command line, through the console script, on a
generated facility: `location add|list|rescan|purge-cache|remove`, `archive`,
`purge --dry-run`, `purge`, `restore` (exit 3 while it waits, then 0) and `audit`
(exit 1 after a flipped bit); and their errors: one clear line on stderr, no traceback,
a non-zero exit.

Each command runs in a subprocess with an OMERODIR pointing at the test run's app
database and this test's facility, as an admin would run it.
"""
import json
import os
import shutil

import bagit
import pytest

from omero_storagemanager.models import Collection, Copy, Location, PurgedFile
from tests.test_archive_faults import (FaultWorld, clean, complete_bags, one_clear_line,
                                       run_cli)

GB = 10**9


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    name = "cli_" + request.node.name.lower()[:40]
    w = FaultWorld(pg_server, name, tmp_path)
    w.dir = w.omerodir(tmp_path / "omerodir")
    yield w
    w.conn.close()
    pg_server.drop_database(name)


def cli(world, *args):
    return run_cli(world.dir, *args)


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def mount(world, name):
    path = world.root / name
    path.mkdir()
    return str(path)


def test_location_add_list_remove(world):
    disk = mount(world, "disk1")
    out = ok(cli(world, "location", "add", "Disk 1", "--type", "hdd", "--mount", disk,
                 "--max-size", "4TB", "--current"))
    location = Location.objects.get(name="Disk 1")
    assert f"at {disk}/{location.pk}/" in out
    assert location.max_bytes == 4 * 10**12 and location.current
    assert os.path.isdir(os.path.join(disk, str(location.pk), "write"))
    tape = mount(world, "tape")
    ok(cli(world, "location", "add", "Tape A", "--type", "tape", "--mount", tape,
           "--max-size", "2TiB", "--watermark", "70", "--purge-enabled"))
    listed = json.loads(ok(cli(world, "location", "list", "--json")))
    assert [(r["name"], r["type"], r["max_bytes"], r["current"], r["online"], r["copies"])
            for r in listed] == [("Disk 1", "hdd", 4 * 10**12, True, True, 0),
                                 ("Tape A", "tape", 2 * 2**40, False, True, 0)]
    text = ok(cli(world, "location", "list"))
    assert "Disk 1" in text and "(current)" in text and "Tape A" in text
    tape_id = Location.objects.get(name="Tape A").pk
    assert f"removed 'Tape A' (id {tape_id})" in ok(cli(world, "location", "remove", str(tape_id)))
    assert list(Location.objects.values_list("name", flat=True)) == ["Disk 1"]


@pytest.mark.parametrize("args, message", [
    (["--mount", "/tmp/../etc", "--max-size", "1TB"], "contains '..'"),
    (["--mount", "relative/dir", "--max-size", "1TB"], "is a relative path"),
    (["--mount", "/no/such/mount/point", "--max-size", "1TB"], "does not exist"),
    (["--mount", "{file}", "--max-size", "1TB"], "is not a directory"),
    (["--mount", "{dir}", "--max-size", "4 parsecs"], "not a size: '4 parsecs'"),
    (["--mount", "{dir}", "--max-size", "1TB", "--watermark", "101"], "watermark"),
    # 0 says "purging is not used" (manual chapter 13), so not with purging on
    (["--mount", "{dir}", "--max-size", "1TB", "--watermark", "0", "--purge-enabled"],
     "watermark"),
])
def test_location_add_refuses_bad_input_in_one_line(world, args, message):
    folder = mount(world, "ok-dir")
    a_file = os.path.join(folder, "a file")
    open(a_file, "w").close()
    args = [a.format(file=a_file, dir=folder) for a in args]
    proc = cli(world, "location", "add", "Bad", "--type", "hdd", *args)
    err = one_clear_line(proc)
    # One line saying what is wrong (after argparse's usage line, for a malformed option).
    assert message in err.splitlines()[-1], err
    assert len(err.splitlines()) == 1 or err.startswith("usage:"), err
    assert not Location.objects.exists()
    assert os.listdir(folder) == ["a file"]  # nothing created


def test_unknown_collection_is_one_clear_line(world):
    world.location("hdd")
    for verb in (["archive"], ["purge", "--dry-run"], ["restore"]):
        err = one_clear_line(cli(world, *verb, "Project:987654"))
        assert "Project:987654" in err and len(err.splitlines()) == 1, err
    err = one_clear_line(cli(world, "purge", "Dataset:1"))
    assert "Project:<id> or Screen:<id>" in err and len(err.splitlines()) == 1
    assert not Copy.objects.exists() and not PurgedFile.objects.exists()


def test_missing_location_is_one_clear_line(world):
    err = one_clear_line(cli(world, "archive", "Project:1"))  # no location yet
    assert "no current archive location" in err and len(err.splitlines()) == 1
    err = one_clear_line(cli(world, "archive", "Project:1", "--location", "99"))
    assert "no archive location with id 99" in err and len(err.splitlines()) == 1
    err = one_clear_line(cli(world, "location", "remove", "99"))
    assert "no archive location with id 99" in err and len(err.splitlines()) == 1
    assert not Copy.objects.exists()


def test_archive_purge_restore_through_the_command_line(world):
    key = world.key_where(clean)
    before = world.primaries(key)
    location = world.location("hdd", name="Disk 7")
    out = ok(cli(world, "archive", key, "--quiet"))
    copy = Copy.objects.get(location=location, state=Copy.VERIFIED)
    assert f"verified copy {copy.bag_path}" in out
    bagit.Bag(str(location.backend().write_root / copy.bag_path)).validate()
    assert "unchanged" in ok(cli(world, "archive", key, "--quiet"))
    # A location holding copies cannot be removed.
    err = one_clear_line(cli(world, "location", "remove", str(location.pk)))
    assert "holds copies" in err and "Disk 7" in err and len(err.splitlines()) == 1
    # A dry run says what would be freed and changes nothing.
    out = ok(cli(world, "purge", key, "--dry-run"))
    size = sum(os.path.getsize(p) for p in before)
    assert f"{key}: would free {len(before)} file(s)" in out and f"({size} bytes)" in out
    assert world.primaries(key) == before and not PurgedFile.objects.exists()
    out = ok(cli(world, "purge", key))
    assert f"purged {len(before)} file(s)" in out
    assert not any(os.path.lexists(p) for p in before)
    assert world.collection(key).state == Collection.PURGED
    # The disk is not connected: the restore waits (exit 3) and says for what.
    id_dir = os.path.join(location.mount, str(location.pk))
    os.rename(id_dir, id_dir + ".away")
    proc = cli(world, "restore", key)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "waiting: connect archive disk 'Disk 7'" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert world.collection(key).state == Collection.RESTORING
    os.rename(id_dir + ".away", id_dir)
    out = ok(cli(world, "restore", key))
    assert f"restored {len(before)} file(s)" in out
    assert world.primaries(key) == before


def test_audit_fails_on_a_flipped_bit(world):
    key = world.key_where(lambda c: clean(c) and any(f["size"] > 0 for f in c["files"]))
    tape = world.location("tape", purge_watermark=1, purge_enabled=True)
    world.archive(key, tape)
    copy = Copy.objects.get(location=tape)
    assert "audited 1 copies: 0 failed" in ok(cli(world, "audit"))
    # A bit flips in the copy restores would read (a tape location's read cache).
    entry = next(e for e in copy.entries.all() if e.size > 0)
    bad = tape.backend().read_root / copy.bag_path / "data" / entry.relpath
    with open(bad, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0x01]))
    proc = cli(world, "audit")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "audited 1 copies: 1 failed" in proc.stdout
    assert f"{entry.relpath}: checksum mismatch" in proc.stdout
    copy.refresh_from_db()
    assert copy.state == Copy.FAILED_AUDIT


def test_purge_cache_and_rescan(world):
    key = world.key_where(clean)
    tape = world.location("tape", purge_watermark=1, purge_enabled=True)
    world.archive(key, tape)
    copy = Copy.objects.get(location=tape)
    # The read cache is emptied down to its 1 % watermark, but not of a copy still in
    # write/ (not on tape yet); once the tape software has taken it, it goes.
    out = ok(cli(world, "location", "purge-cache", str(tape.pk)))
    assert "evicted 0 bag(s)" in out and "kept 1 still in write/" in out
    on_tape = world.root / "tape" / copy.bag_path
    shutil.move(tape.backend().write_root / copy.bag_path, on_tape)
    out = ok(cli(world, "location", "purge-cache", str(tape.pk)))
    assert "evicted 1 bag(s)" in out
    assert not (tape.backend().read_root / copy.bag_path).exists()
    # A disk the app has never seen: rescan catalogues the bags it finds on it.
    other = world.location("hdd", name="found disk")
    shutil.copytree(on_tape, other.backend().write_root / copy.bag_path)
    out = ok(cli(world, "location", "rescan", str(other.pk)))
    assert "rescan: 1 bag(s) added" in out
    found = Copy.objects.get(location=other)
    assert found.state == Copy.VERIFIED and found.files == copy.files
    assert "rescan: 0 bag(s) added" in ok(cli(world, "location", "rescan", str(other.pk)))
    assert complete_bags(other)
    # purge-cache on a location type without a read cache is refused clearly.
    err = one_clear_line(cli(world, "location", "purge-cache", str(other.pk)))
    assert "no read cache" in err and len(err.splitlines()) == 1
