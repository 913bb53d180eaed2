"""The kill -9 matrix at an S3 location: archive, purge and restore to and from a bucket
of a real S3 server (SeaweedFS, testbed/seaweed.py), killed at seeded instants.

The trials are the matrix's (matrix.py: console script, django-q2 worker, web process;
the same plan, kill points and re-run or recovery), with S3Setup in place of Setup:
each trial's location is an `s3` location in a bucket of its own, on a clean
collection of a few dozen files (hundreds of objects uploaded, checked and read back
per trial would take minutes on the shared 2-core machine), and what is counted of the
copies is asked of the server:

  corrupt    a VERIFIED copy without its completion object, whose manifest object does
             not list exactly its rows, or one of whose objects does not read back with
             its row's SHA-1; a row of an unfinished copy without its object of those
             bytes; at the end of a trial, a multipart upload left open in the bucket
             (after the kill one may be open: the next run of the archive aborts it);
  unsafe     a purged primary whose verified copy's object does not read back with the
             primary's bytes;
  lost, stuck, duplicates, 5xx as in matrix.py.

Full run (writes docs/reliability/kill-matrix-s3.json and re-renders docs/reliability.md):
    .venv/bin/python -m tests.reliability.matrix_s3
The pytest test (tests/test_s3_kill_matrix.py) runs a quick form into a temporary
directory.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import sys

from tests.reliability.matrix import (COUNTERS, DEFAULT_SEED, KINDS, KIND_TITLES, Setup,
                                      result_of, run_matrix)

DEFAULT_TRIALS = {"console": 9, "worker": 9, "web": 0}
SECRET = "killmatrix"


def small_clean(c):
    """A collection of a few dozen files, nothing shared, missing or in place."""
    from tests.test_archive_faults import clean

    return bool(clean(c)) and 12 <= len(c["files"]) <= 200


class S3Setup(Setup):
    """A trial whose location is a bucket of the S3 server `S3Setup.s3`."""

    s3 = None  # the SeaweedServer, set before the trials run
    collection_wanted = staticmethod(small_clean)

    def make_location(self):
        from omero_storagemanager import settings
        from omero_storagemanager.engine.locations import add_location

        self.bucket = f"km-{self.name.replace('_', '-')}"
        client = self.s3.client()
        try:
            client.create_bucket(Bucket=self.bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            _empty(client, self.bucket)
        settings.S3_CREDENTIALS = self.secrets()
        staging = self.root / "staging"
        staging.mkdir()
        return add_location("Kill bucket", "s3", str(staging), 10**12, current=True,
                            options={"bucket": self.bucket, "endpoint_url": self.s3.endpoint,
                                     "region": "us-east-1", "prefix": "k",
                                     "addressing_style": "path", "concurrency": 2,
                                     "credentials": f"config:{SECRET}"})

    def secrets(self):
        return {SECRET: {"access_key_id": self.s3.access_key,
                         "secret_access_key": self.s3.secret_key}}

    def omerodir_settings(self):
        return {"s3_credentials": json.dumps(self.secrets())}

    def base(self, copy):
        return f"k/{self.location.pk}/{copy.bag_path}"

    def object_sha1(self, client, key):
        try:
            body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return hashlib.sha1(body).hexdigest()

    def corrupt_copies(self, at_end=False):
        from omero_storagemanager.models import Copy

        n, notes = 0, []
        client = self.s3.client()
        expected = {self.world.paths.relative(f["path"])
                    for f in self.world.truth.collections[self.key]["files"]}
        copies = Copy.objects.filter(collection=self.world.collection(self.key))
        for copy in copies.filter(state=Copy.VERIFIED):
            base, what = self.base(copy), f"copy {copy.pk}"
            rows = dict(copy.entries.values_list("relpath", "checksum"))
            if self.object_sha1(client, f"{base}/.omero-storagemanager-complete") is None:
                n += 1
                notes.append(f"{what}: verified without its completion object")
                continue
            manifest = client.get_object(Bucket=self.bucket, Key=f"{base}/manifest-sha1.txt")
            listed = {}
            for line in manifest["Body"].read().decode().splitlines():
                digest, path = line.split(None, 1)
                listed[path[len("data/"):]] = digest
            if listed != rows or copy.files != len(rows) or \
                    (not copy.parent_id and set(rows) != expected):
                n += 1
                notes.append(f"{what}: manifest and rows are not one per file of the collection")
            for relpath, checksum in rows.items():
                if self.object_sha1(client, f"{base}/data/{relpath}") != checksum:
                    n += 1
                    notes.append(f"{what}: object of {relpath} differs from its row")
        for copy in copies.filter(state=Copy.WRITING):  # rows only for whole objects
            for relpath, checksum in copy.entries.values_list("relpath", "checksum"):
                if self.object_sha1(client, f"{self.base(copy)}/data/{relpath}") != checksum:
                    n += 1
                    notes.append(f"unfinished copy {copy.pk}: row of {relpath} without "
                                 "its object")
        if at_end:
            left = client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
            if left:
                n += len(left)
                notes.append(f"{len(left)} multipart upload(s) left open: "
                             + ", ".join(u["Key"] for u in left[:3]))
        return n, notes

    def unsafe(self):
        from omero_storagemanager.models import Copy, PurgedFile

        n, notes, rows = 0, [], {}
        client = self.s3.client()
        for row in PurgedFile.objects.filter(collection=self.world.collection(self.key)) \
                .select_related("copy_file__copy"):
            rows[row.path] = row
            if os.path.lexists(row.path):
                continue  # still there (intent only, or restored): nothing at risk
            copy = row.copy_file.copy
            want = self.before[row.path][0]
            ok = (row.copy_file.verified and copy.state == Copy.VERIFIED
                  and row.sha1 == row.copy_file.checksum == want
                  and self.object_sha1(client, f"{self.base(copy)}/data/{row.relpath}") == want)
            if not ok:
                n += 1
                notes.append(f"{row.path} deleted without a verified object of its bytes")
        return n, notes, rows

    def close(self):
        try:
            client = self.s3.client()
            _empty(client, self.bucket)
            client.delete_bucket(Bucket=self.bucket)
        except Exception:  # noqa: BLE001 - the server's folder goes with the run anyway
            pass
        super().close()


def _empty(client, bucket):
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                      UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def run_s3_matrix(pg_server, s3_server, seed, budget=None, log=print, **counts):
    """run_matrix with S3Setup on `s3_server`; the app's S3 secrets restored after."""
    from omero_storagemanager import settings

    saved, S3Setup.s3 = settings.S3_CREDENTIALS, s3_server
    try:
        return run_matrix(pg_server, seed, budget=budget, log=log, setup=S3Setup, **counts)
    finally:
        settings.S3_CREDENTIALS = saved


def s3_result(results, seed, asked, elapsed, command):
    """The matrix's record, as the S3 part of the report."""
    result = result_of(results, seed, asked, elapsed, command)
    result.update(part="kill-matrix-s3", order=11, title="Kill -9 matrix at an S3 location")
    result["intro"] = (
        "The kill -9 matrix above with the copies in a bucket of a real S3 server "
        "(SeaweedFS on 127.0.0.1, a bucket per trial) and a clean collection of a few "
        "dozen files instead of the big Screen: the same kinds of trial, kill points, "
        "re-run and recovery (django-q2 settings as above). Lost: primary files gone "
        "without a purge record, or changed. Corrupt, asked of the server: a verified "
        "copy without its completion object, whose manifest object does not list "
        "exactly its rows, or whose objects do not read back with their rows' SHA-1; a "
        "row of an unfinished copy without its object; a multipart upload left open at "
        "the end of a trial. Unsafe: a purged primary without a verified object of its "
        "bytes. Stuck, duplicate jobs and 5xx as above.")
    for row in result["rows"]:
        row[-1] = row[-1].replace("one verified bag, valid for `bagit`",
                                  "one verified copy, whole on the server")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for kind in KINDS:
        parser.add_argument(f"--{kind}", type=int, default=DEFAULT_TRIALS[kind],
                            help=f"{KIND_TITLES[kind]} trials (default {DEFAULT_TRIALS[kind]})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--page", default=None)
    args = parser.parse_args(argv)
    asked = {k: getattr(args, k) for k in KINDS}
    command = ".venv/bin/python -m tests.reliability.matrix_s3" + "".join(
        f" --{k} {asked[k]}" for k in KINDS if asked[k] != DEFAULT_TRIALS[k]) + (
        f" --seed {args.seed}" if args.seed != DEFAULT_SEED else "") + (
        f" --budget {args.budget:g}" if args.budget else "")
    from tests.reliability.matrix import _bootstrap

    fixtures = _bootstrap()
    from pathlib import Path

    from testbed.seaweed import SeaweedServer
    from tests.reliability import report

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    s3 = SeaweedServer(Path(fixtures._state["base"]) / "s3").start()
    try:
        results, elapsed = run_s3_matrix(fixtures._state["server"], s3, args.seed,
                                         budget=args.budget,
                                         log=lambda s: print(s, flush=True), **asked)
        report.record(s3_result(results, args.seed, asked, elapsed, command),
                      args.results_dir or report.RESULTS_DIR, args.page or report.REPORT)
    finally:
        s3.destroy()
        fixtures.pytest_unconfigure(None)
        shutil.rmtree(fixtures._state.get("base", ""), ignore_errors=True)
    total = {c: sum(getattr(t, c) for t in results) for c in COUNTERS}
    print(f"{len(results)} trials in {elapsed:.0f}s: "
          + ", ".join(f"{c} {total[c]}" for c in COUNTERS))
    return 1 if any(total.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
