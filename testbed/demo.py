"""The demo: a real OMERO.web with this app, on an embedded PostgreSQL, from nothing.

    scripts/demo.sh [--port 4080] [--dir var/demo] [--seed 1] [--big-gib 3]

It starts PostgreSQL, generates an OMERO database and binary repository that look like
a facility's, creates an archive location on local disk and one in a bucket of a local
S3 server (SeaweedFS, testbed/seaweed.py), migrates the app's database,
starts a django-q2 cluster and OMERO.web (gunicorn on omeroweb.wsgi) on 127.0.0.1,
prints the URL and the demo users, and stops everything on Ctrl-C.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from testbed.omerodir import django_db, libpq_params, web_config, write_config
from testbed.pg import PostgresServer

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4080)
    parser.add_argument("--dir", default=str(REPO / "var" / "demo"),
                        help="where the demo keeps its data (wiped at each start)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated facility")
    parser.add_argument("--workers", type=int, default=2, help="django-q2 workers")
    parser.add_argument("--big-gib", type=float, default=0,
                        help="grow one Project's largest file to this many GiB (sparse), so "
                             "an archive or a restore runs long enough to watch its progress "
                             "(scripts/demo.sh: 3; 0: none)")
    parser.add_argument("--check", action="store_true",
                        help="start, check that the app answers, then stop (for tests)")
    return parser.parse_args(argv)


def say(message):
    print(f"[demo] {message}", flush=True)


def grow_one_collection(dsn, truth, gib, exclude=("Project:2", "Project:3", "Project:4")):
    """Makes one Project a few GiB without writing them: its largest plain SHA1 file is
    extended with a hole (sparse: no disk blocks), OMERO's size and checksum of it are
    updated in the database, and the truth follows. Reading the hole is fast, so this
    takes seconds; archiving it writes the GiB to the archive location."""
    import hashlib

    import psycopg2

    candidates = []
    for key, col in sorted(truth.collections.items()):
        if not key.startswith("Project:") or key in exclude:
            continue
        for f in col["files"]:
            if (f["kind"] == "fileset_entry" and f["hasher"] == "SHA1-160"
                    and not f["symlink_target"] and not f["missing"]
                    and not f["shared_with"] and not f.get("db_size")):
                candidates.append((f["size"], key, f))
    if not candidates:
        say("no file to grow for the big demo collection")
        return None
    _, key, record = max(candidates, key=lambda c: c[0])
    size = int(gib * 2**30)
    with open(record["path"], "r+b") as handle:
        handle.truncate(size)
        handle.seek(0)
        digest = hashlib.sha1()
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    os.utime(record["path"], (record["atime"], record["mtime"]))
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("UPDATE originalfile SET size = %s, hash = %s WHERE id = %s",
                    [size, digest.hexdigest(), record["originalfile_id"]])
    record.update(size=size, hash=digest.hexdigest())
    say(f"{key} holds a {gib:g} GiB file (sparse) so its archive and restore take long "
        "enough to watch")
    return key


def prepare(base, seed, big_gib=0):
    """PostgreSQL, the OMERO database and repository, the OMERODIR. Returns the server."""
    from testbed.generator import generate_facility
    from testbed.omerodb import create_omero_database

    if base.exists():
        stale = PostgresServer(base / "pg", port=1)
        stale.stop()  # a demo killed hard may have left its server running
        shutil.rmtree(base)
    base.mkdir(parents=True)
    base.chmod(0o755)
    server = PostgresServer(base / "pg").start()
    say(f"PostgreSQL on {server.host}:{server.port}")
    omero_dsn = create_omero_database(server, "omero")
    started = time.monotonic()
    truth = generate_facility(omero_dsn, base / "facility", seed=seed)
    if big_gib:
        grow_one_collection(omero_dsn, truth, big_gib)
    truth.save(base / "facility" / "truth.json")
    say(f"generated facility (seed {seed}): {len(truth.collections)} Projects and Screens "
        f"in {time.monotonic() - started:.1f} s")
    server.create_database("omeroweb")
    archive = base / "archive"
    archive.mkdir()
    from testbed.seaweed import SeaweedServer

    s3 = SeaweedServer(base / "s3")  # its keys, for the config's secret; started below
    write_config(base / "omerodir", web_config(
        app_db=dict(django_db(server, "omeroweb"), CONN_MAX_AGE=60, CONN_HEALTH_CHECKS=True),
        omero_db=libpq_params(server, "omero"),
        data_dir=truth.data_dir,
        managed_dir=truth.managed_dir,
        var_dir=base / "var",
        # The nightly backup dumps with the embedded PostgreSQL's own pg_dump: Debian's
        # (older) one refuses a newer server.
        extra={"omero.web.storagemanager.demo": "true",
               # The S3 location's secret, as an admin would set it with omero config.
               "omero.web.storagemanager.s3_credentials": {"demo": {
                   "access_key_id": s3.access_key, "secret_access_key": s3.secret_key}},
               "omero.web.storagemanager.pg_bin_dir": str(server.bindir),
               "omero.web.caches": {"default": {
                   "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                   "LOCATION": str(base / "cache")}}},
    ))
    s3.start()
    say(f"S3 server (SeaweedFS) at {s3.endpoint}")
    return server, truth, archive, s3


def add_s3_location(base, s3):
    """An S3 location beside the disk: a bucket of the demo's SeaweedFS, credentials
    from the omero config secret 'demo'."""
    from omero_storagemanager.engine.locations import add_location

    s3.client().create_bucket(Bucket="omero-archive")
    staging = base / "s3-staging"
    staging.mkdir()
    location = add_location(
        "Demo S3 bucket", "s3", str(staging), 100 * 1024**3,
        options={"bucket": "omero-archive", "endpoint_url": s3.endpoint,
                 "region": "us-east-1", "prefix": "demo", "addressing_style": "path",
                 "credentials": "config:demo"})
    say(f"archive location {location.name!r} (id {location.pk}) at "
        f"s3://omero-archive/demo/{location.pk}/")


def setup_app_database(archive, s3=None):
    """Migrate, and register the demo's archive location (<mount>/<id>/read|write)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from omero_storagemanager.models import Location

    location = Location.objects.create(
        name="Demo archive disk", type=Location.HDD, mount=str(archive),
        max_bytes=10 * 1024**3, current=True)
    for sub in ("read", "write"):
        (archive / str(location.pk) / sub).mkdir(parents=True)
    say(f"archive location {location.name!r} (id {location.pk}) at {archive}")
    if s3 is not None:
        add_s3_location(archive.parent, s3)
    from omero_storagemanager.tasks.schedules import set_schedule

    set_schedule("backup", "02:00")  # refused here if no pg_dump fits the server
    say("nightly backup of the app database at 02:00")
    scan_facility()


def check_backup():
    """Run the nightly backup job now on the cluster; True when it wrote a 0600 dump."""
    import stat

    from omero_storagemanager.models import Job
    from omero_storagemanager.tasks.schedules import run_now

    job = run_now("backup")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.state not in (Job.DONE, Job.FAILED):
        time.sleep(0.5)
        job.refresh_from_db()
    path = job.summary.get("path", "")
    mode = stat.S_IMODE(os.stat(path).st_mode) if path and os.path.exists(path) else None
    say(f"check: backup job {job.state}, dump mode {oct(mode) if mode is not None else '-'}"
        + (f": {job.error}" if job.error else ""))
    return job.state == Job.DONE and mode == 0o600


def scan_facility():
    """Sync and stat-scan every collection, so the Storage tab has figures at once, and
    set demo quotas that put someone over (to show the red)."""
    from omero_storagemanager import catalog, settings
    from omero_storagemanager.catalog.paths import RepositoryPaths
    from omero_storagemanager.engine.scan import scan
    from omero_storagemanager.models import Quota

    conn = catalog.connect()
    try:
        report = scan(conn, RepositoryPaths(settings.data_dir(), settings.managed_dir()), "stat",
                      include_attachments=settings.INCLUDE_ATTACHMENTS)
    finally:
        conn.close()
    Quota.objects.create(scope=Quota.USER, omero_id=None, max_bytes=8 * 1024**2)
    Quota.objects.create(scope=Quota.GROUP, omero_id=None, max_bytes=32 * 1024**2)
    say(f"scanned {report.collections} collections ({report.files} files); demo quotas: "
        "8 MiB per user, 32 MiB per group")
    seed_usage_history()


def seed_usage_history(days=60):
    """Today's usage recorded for real; the 60 days before it made up for the demo (a
    steady growth to today's figures, with a little noise) so that the history charts
    and the projection have something to show. Production records only real days."""
    import random
    from datetime import date, timedelta

    from omero_storagemanager.engine.usage import record_usage
    from omero_storagemanager.models import UsageRecord

    today = date.today()
    record_usage(today)
    rng = random.Random(7)
    made = []
    for row in UsageRecord.objects.filter(day=today):
        for back in range(1, days + 1):
            share = max(0.05, 1 - back * 0.006 + rng.uniform(-0.004, 0.004))
            made.append(UsageRecord(day=today - timedelta(days=back), scope=row.scope,
                                    subject=row.subject, name=row.name,
                                    bytes=int(row.bytes * share), files=int(row.files * share),
                                    limit_bytes=row.limit_bytes))
    UsageRecord.objects.bulk_create(made)
    say(f"usage recorded today; {days} earlier days of usage history made up for the demo")


def wait_for(url, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"OMERO.web did not answer at {url}")


def sign_in_and_fetch(url, user_id, path="/storagemanager/"):
    """Sign in at /demo/ as a visitor would (cookie, CSRF token, POST) and fetch `path`.

    Returns (HTTP status, body). Used by --check and the tests.
    """
    import http.cookiejar
    import re
    import urllib.parse

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url + "/demo/", timeout=30) as response:
        form = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "user_id": user_id,
                                   "url": path}).encode()
    request = urllib.request.Request(url + "/demo/", data=data,
                                     headers={"Referer": url + "/demo/"})
    with opener.open(request, timeout=30) as response:
        return response.status, response.read().decode()


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    base = Path(args.dir).resolve()
    server, truth, archive, s3 = prepare(base, args.seed, args.big_gib)
    children = []
    try:
        env = dict(os.environ, OMERODIR=str(base / "omerodir"),
                   DJANGO_SETTINGS_MODULE="testbed.demo_settings",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        os.environ.update(env)
        setup_app_database(archive, s3)
        import omeroweb

        manage = str(Path(omeroweb.__file__).parent / "manage.py")
        logs = base / "var" / "log"
        logs.mkdir(parents=True, exist_ok=True)
        children.append(subprocess.Popen(
            [sys.executable, manage, "qcluster"], env=env, cwd=str(REPO),
            stdout=open(logs / "qcluster.log", "ab"), stderr=subprocess.STDOUT))
        children.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "omeroweb.wsgi:application",
             "--bind", f"{args.host}:{args.port}", "--workers", "2", "--timeout", "60"],
            env=env, cwd=str(REPO),
            stdout=open(logs / "gunicorn.log", "ab"), stderr=subprocess.STDOUT))
        url = f"http://{args.host}:{args.port}"
        wait_for(url + "/demo/", time.monotonic() + 60)
        say(f"OMERO.web with omero-storagemanager: {url}/storagemanager/")
        say(f"webclient plugins (demo host page): {url}/demo/webclient/")
        say("demo users (sign in at /demo/, no password):")
        for uid, user in sorted(truth.users.items(), key=lambda item: int(item[0])):
            say(f"  {user['omename']:<10} id {uid}  {user['firstname']} {user['lastname']}")
        say(f"logs: {logs}; Ctrl-C stops everything")
        if args.check:
            admin = next(uid for uid, u in truth.users.items() if 0 in u["groups"])
            status, body = sign_in_and_fetch(url, admin)
            say(f"check: /storagemanager/ answered {status} for user {admin}")
            from django_q.tasks import async_task, result

            # A task through the real broker proves the cluster takes work.
            answer = result(async_task("math.floor", 2.5), wait=60_000)
            say(f"check: django-q2 cluster ran a task: math.floor(2.5) = {answer}")
            backed_up = check_backup()
            return 0 if status == 200 and "Storage" in body and answer == 2 and backed_up else 1
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        say("a demo process ended unexpectedly; see the logs above")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        say("stopping")
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        s3.stop()
        server.stop()
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
