"""kill -9 of the console script during archive, purge and restore at an S3 location
(the S3 row of the reliability suite's kill matrix, in its quick form): each operation
is SIGKILLed at a seeded instant (once a random number of its files are done, watched from
outside: objects in the bucket, primaries gone or back), then run again to completion, against the real S3 server.

After each trial, nothing may be lost or trusted early: a VERIFIED copy's every object
reads back with its row's SHA-1 and the copy has its completion object; no multipart
upload is left open; a purged primary has an object of exactly its bytes; a restore
gives back byte-identical files.
"""
import hashlib
import json
import os
import random
import signal
import subprocess
import time

import pytest

from omero_storagemanager.engine.locations import add_location
from omero_storagemanager.models import Collection, Copy, CopyFile

from .test_archive import clean
from .test_archive_faults import CLI, FaultWorld, cli_env, run_cli

SEEDS = (3, 11)


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    name = "s3k_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    w = FaultWorld(pg_server, name, tmp_path)
    yield w
    w.conn.close()
    pg_server.drop_database(name)


def work_done(op, server, bucket, paths):
    """How far the operation got, seen from outside: objects uploaded (archive),
    primaries gone (purge) or back (restore). Rows are written in batches after the
    work, so the work itself is watched."""
    if op == "archive":
        page = server.client().list_objects_v2(Bucket=bucket, Prefix="k/")
        return sum("/data/" in o["Key"] for o in page.get("Contents", []))
    gone = sum(not os.path.lexists(p) for p in paths)
    return gone if op == "purge" else len(paths) - gone


def kill_during(omerodir, op, key, rng, server, bucket, paths):
    """Start the command, SIGKILL it once a seeded number of its files are done;
    returns how it was stopped."""
    proc = subprocess.Popen([CLI, op, key], env=cli_env(omerodir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    start = work_done(op, server, bucket, paths)
    target = start + rng.randint(1, max(1, len(paths) - 1))
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if work_done(op, server, bucket, paths) >= target:
            break
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return f"killed with {work_done(op, server, bucket, paths) - start} file(s) done"
    proc.communicate()
    return f"finished before the kill (exit {proc.returncode})"


def check_copies(server, bucket, location, collection):
    """Every VERIFIED copy is whole, object for row; no multipart upload is left."""
    client = server.client()
    for copy in Copy.objects.filter(collection=collection, location=location,
                                    state=Copy.VERIFIED):
        base = f"k/{location.pk}/{copy.bag_path}"
        client.head_object(Bucket=bucket, Key=f"{base}/.omero-storagemanager-complete")
        for entry in CopyFile.objects.filter(copy=copy):
            body = client.get_object(Bucket=bucket, Key=f"{base}/data/{entry.relpath}")
            assert hashlib.sha1(body["Body"].read()).hexdigest() == entry.checksum, entry.relpath
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_archive_purge_restore_killed_then_finished_lose_nothing(world, s3_server, s3_bucket,
                                                                 seed):
    rng = random.Random(seed)
    secret = {"kill": {"access_key_id": s3_server.access_key,
                       "secret_access_key": s3_server.secret_key}}
    omerodir = world.omerodir(world.root / "omerodir", s3_credentials=json.dumps(secret))
    staging = world.root / "staging"
    staging.mkdir()
    from omero_storagemanager import settings

    settings.S3_CREDENTIALS, saved = secret, settings.S3_CREDENTIALS
    try:
        location = add_location("Kill bucket", "s3", str(staging), 10**12, current=True,
                                options={"bucket": s3_bucket, "endpoint_url": s3_server.endpoint,
                                         "region": "us-east-1", "prefix": "k",
                                         "addressing_style": "path", "concurrency": 2,
                                         "credentials": "config:kill"})
        key = world.key_where(lambda c: clean(c) and len(c["files"]) >= 6)
        collection = world.collection(key)
        before = world.primaries(key)
        log = []
        for op in ("archive", "purge", "restore"):
            log.append((op, kill_during(omerodir, op, key, rng, s3_server, s3_bucket,
                                        list(before))))
            assert log[-1][1].startswith("killed"), log  # killed mid-way, not after
            check_copies(s3_server, s3_bucket, location, collection)
            again = run_cli(omerodir, op, key, timeout=300)
            assert again.returncode == 0, (log, again.stdout + again.stderr)
            check_copies(s3_server, s3_bucket, location, collection)
            if op == "purge":
                assert world.collection(key).state == Collection.PURGED, log
        assert world.primaries(key) == before, log  # byte-identical, modes too
        assert world.collection(key).state == Collection.ARCHIVED, log
    finally:
        settings.S3_CREDENTIALS = saved
