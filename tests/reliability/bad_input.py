"""Bad input, class by class: each gets a clear refusal and leaves nothing changed.

Issue 7 (reliability). On a generated facility (its own OMERO-shaped database and binary
repository), with the app's database of the test bed, each class of bad input is fed
through the ways it can come in (the JSON API through the real URLs and middleware, the
command line, the engine and its jobs), and the run compares a snapshot taken before
and after: every app table and every OMERO table (row count and checksum), the whole
repository, the archive locations and their XML folders (every entry: type, size,
mtime, mode, link target).

Classes:
  ids        collections that do not exist or belong to someone else, in every action
             of the API (as a plain user) and in every verb of the command line; jobs,
             requests and locations that do not exist;
  mounts     location mount points with '..', relative, symlinks to /, missing, a file,
             /, control characters, a symlink loop: `location add` and the admin API
             (add, and edit of an existing location);
  names      XML/HTML special characters, quotes, non-ASCII and line breaks in
             collection, location, requester and comment fields: the XML orders of an
             automated location (parsed back), e-mails (a real SMTP server; parsed
             back), job logs (one entry per line), pages (escaped HTML) and the API
             (names round-trip);
  symlinks   symlink loops, a directory loop and symlinks escaping the repository
             inside the managed repository: scan reports them and ends, archive refuses
             or copies content, purge never deletes or changes anything outside;
  huge       a fileset of 100,000 entries in the OMERO database: scan stays bounded in
             memory, the API answers in pages;
  settings   every omero.web.storagemanager.* key with a malformed value: start-up
             stops and names the key.

Full run (writes docs/reliability/bad-input.json and re-renders docs/reliability.md):
    .venv/bin/python -m tests.reliability.bad_input
The pytest test (tests/reliability/test_bad_input.py) runs a quick version.
"""
import argparse
import email
import email.policy
import json
import os
import re
import stat
import subprocess
import sys
import time
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
API = "/storagemanager/api/v1/"
NAMES = ['<script>alert("sm")</script>', "O'Brien & <Sons> \"quoted\" ]]> <!-- x -->",
         "Ünïcødé 漢字 Ørsted 🧪", "tab\there and a\nline break 2026-01-01 00:00:00 done"]
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def log(message):
    print(f"[bad-input {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- snapshots -----------------------------------------------------------------------------

def tree(*roots):
    """{path: (type, size, mtime_ns, mode, link target)} of every entry under roots."""
    out = {}
    for root in roots:
        root = str(root)
        if not os.path.lexists(root):
            continue
        for top, dirs, names in os.walk(root):
            for name in dirs + names:
                path = os.path.join(top, name)
                st = os.lstat(path)
                target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
                out[path] = (stat.S_IFMT(st.st_mode), st.st_size if not stat.S_ISDIR(
                    st.st_mode) else 0, st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0,
                    stat.S_IMODE(st.st_mode), target)
    return out


class Snapshot:
    def __init__(self, world, roots):
        from tests.reliability.security import snapshot

        self.world, self.roots = world, roots
        self.rows = snapshot(world)
        self.files = tree(*roots)
        self.top = set(os.listdir("/"))

    def changes(self):
        from tests.reliability.security import changed, snapshot

        out = [f"table {t}" for t in changed(self.rows, snapshot(self.world))]
        after = tree(*self.roots)
        out += [f"file {p}" for p in sorted(set(self.files) | set(after))
                if self.files.get(p) != after.get(p)]
        out += [f"/{p} appeared" for p in sorted(set(os.listdir("/")) - self.top)]
        return out


class Tally:
    """One row of the report: trials, clear refusals, what changed, what went wrong."""

    def __init__(self, name):
        self.name, self.trials, self.refused, self.changed = name, 0, 0, []
        self.problems = []

    def refusal(self, ok, label, detail=""):
        self.trials += 1
        if ok:
            self.refused += 1
        else:
            self.problems.append(f"{label}: {detail}"[:300])

    def check(self, pair, label):
        ok, why = pair
        self.refusal(ok, label, why)

    def row(self, outcome):
        return [self.name, self.trials, self.refused, len(self.changed), outcome]


def api_refusal(response, allowed=(400, 403, 404, 409)):
    from tests.reliability.security import clear_refusal

    if response.status_code not in allowed:
        return False, f"HTTP {response.status_code}: {response.content[:150]!r}"
    ok, why = clear_refusal(response)
    return ok, why


def cli(world, args, real):
    """(ok, message): the verb refused in one clear line. real: the console script in a
    subprocess; else the management command in process (same parser, same code)."""
    from django.core.management import CommandError, call_command

    from tests.reliability.security import SQL_TRACES

    if real:
        from tests.test_archive_faults import run_cli

        proc = run_cli(world.dir, *args)
        err = proc.stderr.strip()
        ok = proc.returncode != 0 and err and "Traceback" not in err and \
            (len(err.splitlines()) == 1 or err.startswith("usage:"))
        return bool(ok), f"exit {proc.returncode}: {err[-300:]}"
    from tests.reliability.security import _StringIO

    try:
        call_command("storagemanager", *args, stdout=_StringIO(), stderr=_StringIO())
    except CommandError as exc:
        message = str(exc)
        bad = not message or len(message.splitlines()) > 1 or any(
            t.lower() in message.lower() for t in SQL_TRACES)
        return not bad, message[:300]
    except SystemExit as exc:
        return bool(exc.code), f"exit {exc.code}"
    except Exception as exc:  # noqa: BLE001 - a traceback on the command line
        return False, f"{type(exc).__name__}: {exc}"
    return False, "accepted"


# -- ids -----------------------------------------------------------------------------------

def bad_ids(world, web, real_cli, quick):
    from omero_storagemanager.models import Collection, Job, Request

    t = Tally("collection, job, request, location ids that do not exist or are someone else's")
    eve = Collection.objects.get(kind="project", omero_id=1)  # private group, not alice's
    job = Job.objects.create(kind="scan", state=Job.QUEUED, requested_by_id=eve.owner_id,
                             requested_by_name="eve")
    job.collections.set([eve])
    request = Request.objects.create(kind="archive", collection=eve,
                                     requested_by_id=eve.owner_id, requested_by_name="eve")
    snap = Snapshot(world, [world.truth.data_dir, world.root / "mounts"])
    alice = web.api("alice")
    keys = ["Project:987654", "Screen:0", "Project:1", "Project:99999999999999999999",
            "Dataset:1", "Project:-1", "project:", "Image:3"]
    for action in ("scan", "archive", "purge", "restore", "request_archive", "request_restore"):
        for key in keys:
            t.check((api_refusal(alice.post(API + "actions/", {
                "action": action, "collections": [key]}))), f"alice {action} {key}")
        # someone else's, visible: bob's Project:5 in a group alice is a member of
        ok, why = api_refusal(alice.post(API + "actions/", {"action": "purge",
                                                             "collections": ["Project:5"]}))
        t.refusal(ok, f"alice purge bob's Project:5 ({action} round)", why)
    for key in ("Project:987654", "Project:1", "Screen:0"):
        t.check((api_refusal(alice.get(f"{API}collections/{key}/"))), key)
    for path in (f"objects/project/987654/", "objects/dataset/1/", "objects/plate/987654/"):
        t.check((api_refusal(alice.get(API + path))), path)
    t.check((api_refusal(alice.get(API + "breakdown/", objects="project-987654,"
                                              "project-1"))), "breakdown")
    for pk in (job.pk, 987654):
        for what in ("", "log/"):
            t.check((api_refusal(alice.get(f"{API}jobs/{pk}/{what}"))), f"job {pk}")
        for what in ("cancel/", "retry/"):
            t.check((api_refusal(alice.post(f"{API}jobs/{pk}/{what}"))),
                      f"job {pk} {what}")
    for pk in (request.pk, 987654):
        for what in ("approve/", "decline/"):
            t.check((api_refusal(alice.post(f"{API}requests/{pk}/{what}"))),
                      f"request {pk} {what}")
    admin = web.api("ingrid")
    for path in ("admin/locations/987654/", "admin/locations/987654/current/",
                 "admin/locations/987654/remove/", "admin/locations/987654/rescan/"):
        t.check((api_refusal(admin.post(API + path, {"name": "x"}))), path)
    cli_keys = ["Project:987654", "Screen:0", "Dataset:1", "Project:abc"]
    verbs = [("scan",), ("inventory",), ("archive",), ("purge", "--dry-run"), ("purge",),
             ("restore",), ("jobs", "submit", "scan")]
    if quick:
        cli_keys, verbs = cli_keys[:2], verbs[:4]
    runs = [verb + (key,) for verb in verbs for key in cli_keys]
    runs += [("jobs", "show", "987654"), ("jobs", "cancel", "987654"),
             ("jobs", "retry", "987654"), ("location", "remove", "987654"),
             ("archive", "Project:2", "--location", "987654")]
    for args in runs:
        ok, why = cli(world, args, real_cli)
        t.refusal(ok, " ".join(args), why)
    t.changed = snap.changes()
    job.delete()
    request.delete()
    return t


# -- mounts ------------------------------------------------------------------------------------

def bad_mounts(world, web, real_cli, quick):
    from omero_storagemanager.engine.locations import add_location
    from omero_storagemanager.models import Location

    t = Tally("location mount points: '..', relative, symlink to /, missing, file, /, loop")
    mounts = world.root / "mounts"
    good = mounts / "good"
    good.mkdir(parents=True, exist_ok=True)
    existing = add_location("existing", "hdd", str(good), 10**9)
    (mounts / "a file").write_text("x")
    os.symlink("/", mounts / "to-root")
    os.symlink(mounts / "loop", mounts / "loop")
    os.symlink(mounts / "nowhere", mounts / "dangling")
    bad = [f"{good}/../good", "relative/dir", "good", str(mounts / "to-root"),
           str(mounts / "missing"), str(mounts / "a file"), "/", str(mounts / "loop"),
           str(mounts / "dangling"), f"{good}\n/etc", f"{good}\x07", "", " ", "//"]
    snap = Snapshot(world, [world.truth.data_dir, mounts])
    admin = web.api("ingrid")
    for mount in bad:
        ok, why = api_refusal(admin.post(API + "admin/locations/", {
            "name": "bad", "type": "hdd", "mount": mount, "max_bytes": "1 GB"}))
        t.refusal(ok, f"API add {mount!r}", why)
        ok, why = api_refusal(admin.post(f"{API}admin/locations/{existing.pk}/",
                                         {"mount": mount}))
        t.refusal(ok, f"API edit {mount!r}", why)
        for xml in ([] if quick else [mount]):
            ok, why = api_refusal(admin.post(API + "admin/locations/", {
                "name": "bad xml", "type": "automated", "mount": str(good),
                "xml_folder": xml, "max_bytes": "1 GB"}))
            t.refusal(ok, f"API automated xml folder {xml!r}", why)
    for mount in bad if not quick else bad[:5]:
        if "\x07" in mount or "\n" in mount:
            continue  # control characters: the API rows above; a shell passes them too,
            # but they are tested once there
        ok, why = cli(world, ("location", "add", "bad", "--type", "hdd", "--mount", mount,
                              "--max-size", "1TB"), real_cli)
        t.refusal(ok, f"CLI add {mount!r}", why)
    t.changed = snap.changes()
    if Location.objects.exclude(pk=existing.pk).exists():
        t.changed.append("a location was added")
    existing.refresh_from_db()
    if existing.mount != str(good):
        t.changed.append(f"the existing location's mount became {existing.mount!r}")
    return t


# -- names ---------------------------------------------------------------------------------------

def special_names(world, web):
    """Names with special characters through XML orders, e-mails, logs, pages, the API."""
    import psycopg2
    from django.test import override_settings

    from omero_storagemanager import preferences
    from omero_storagemanager.engine.locations import add_location
    from omero_storagemanager.engine.sync import sync_collections
    from omero_storagemanager.models import Job, Request
    from omero_storagemanager.tasks import queue
    from omero_storagemanager.tasks.runner import run_job
    from tests.test_archive_faults import clean
    from tests.test_jobs import Mailbox

    t = Tally("names with XML/HTML specials, quotes, non-ASCII, line breaks")
    key = world.key_where(clean)
    world.used = getattr(world, "used", set()) | {key}
    kind, oid = key.split(":")
    name = " / ".join(NAMES)
    conn = psycopg2.connect(world.dsn)
    with conn, conn.cursor() as cur:
        cur.execute(f"UPDATE {kind.lower()} SET name = %s WHERE id = %s", [name, int(oid)])
    conn.close()
    sync_collections(world.conn)
    collection = world.collection(key)
    t.refusal(collection.name == name, "collection name synced intact", collection.name)
    folder = world.root / "mounts" / "arch <&> \"q\" 'a' ü漢 ]]>"
    xml = world.root / "mounts" / "xml <&> 'ü'"
    folder.mkdir(parents=True)
    xml.mkdir(parents=True)
    location = add_location(NAMES[1] + " " + NAMES[2], "automated", str(folder), 10**10,
                            current=True, xml_folder=str(xml))
    box = Mailbox()
    try:
        with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=box.port):
            preferences.set_many({"admin_emails": ["storage@example.org"]})
            job = queue.submit("archive", [collection], location, requested_by=(2, NAMES[3]),
                               dispatch_now=False)
            run_job(job.pk)
            job.refresh_from_db()
            Request.objects.create(kind="archive", collection=collection, requested_by_id=2,
                                   requested_by_name=NAMES[0], comment=name)
            failing = queue.submit("archive", [collection], location, dispatch_now=False,
                                   requested_by=(2, NAMES[1]))
            os.rename(folder / str(location.pk), folder / "away")  # the disk is gone
            run_job(failing.pk)
            os.rename(folder / "away", folder / str(location.pk))
            failing.refresh_from_db()
            box_count = len(box.messages)
            deadline = time.monotonic() + 20
            while len(box.messages) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        box.stop()
    t.refusal(job.state == Job.DONE, "archive of the collection with the odd name",
              f"{job.state} {job.error}")
    # XML orders: each parses and names the real folder.
    orders = list(xml.iterdir())
    t.refusal(bool(orders), "an XML order was written", "none")
    for order in orders:
        try:
            root = ET.parse(order).getroot()
            source = root.findtext("SourceFolder") or root.findtext("DestinationFolder")
            t.refusal(source and os.path.isdir(source) and source.startswith(str(folder)),
                      f"XML order {order.name} names its folder", source)
        except ET.ParseError as exc:
            t.refusal(False, f"XML order {order.name}", f"not valid XML: {exc}")
    # E-mails: each parses; what they say of the names is intact.
    del box_count
    t.refusal(len(box.messages) >= 1, "e-mails sent", f"{len(box.messages)}")
    for _, raw in box.messages:
        # Mailbox keeps the text decoded from UTF-8; parse the bytes, as a mail reader does.
        message = email.message_from_bytes(raw.encode("utf-8"), policy=email.policy.default)
        body = message.get_body().get_content()
        subject = str(message["subject"])
        intact = [n for n in (NAMES[1], NAMES[2]) if n in body]
        mangled = "\ufffd" in body + subject or ("rsted" in body and not intact)
        t.refusal(not mangled and subject.startswith("[OMERO storage]"),
                  f"e-mail {subject[:40]!r} parses, names intact", body[:300])
    # Job logs: one entry per line (a line break in a name cannot forge a log line).
    for j in (job, failing):
        lines = Path(j.log_dir, "job.log").read_text().splitlines()
        forged = [line for line in lines if not STAMP.match(line)
                  and not line.startswith((" ", "Traceback", "\t")) and line.strip()
                  and j.state == Job.DONE]
        forged += [line for line in lines if line.startswith("2026-01-01 00:00:00 done")]
        t.refusal(not forged, f"job {j.pk} log: one entry per line", repr(forged[:3]))
    # Pages: every HTML page escapes; the API gives the names back intact.
    from tests.reliability.security import get_endpoints

    made = {"job": job.pk, "location": location.pk, "request": Request.objects.first().pk,
            "key": key, "dataset": 6}
    for who in ("ingrid", "alice"):
        api = web.api(who)
        for path in get_endpoints(made):
            response = api.get(path)
            text = response.content.decode(errors="replace")
            if response.get("Content-Type", "").startswith("text/html"):
                t.refusal(NAMES[0] not in text and "<Sons>" not in text,
                          f"{who} {path} escapes names", "raw markup in the page")
            elif response.status_code == 200 and path.endswith(f"collections/{key}/"):
                t.refusal(json.loads(text)["collection"]["name"] == name if "collection" in
                          json.loads(text) else name in json.loads(text).get("name", name),
                          f"{who} {path} gives the name back", text[:200])
    listed = json.loads(web.api("ingrid").get(API + "collections/", q=NAMES[2][:7]).content)
    t.refusal(any(i["name"] == name for i in listed["items"]),
              "the quick filter finds the non-ASCII name", str(listed)[:200])
    return t


# -- symlinks in the managed repository --------------------------------------------------------

def sha1(path):
    from tests.test_archive_faults import sha1 as digest

    return digest(path)


def hostile_links(world):
    """Symlink loops and escaping links inside the managed repository, in a collection's
    files. Returns (key, {path: kind}, outside dir)."""
    from tests.test_archive_faults import clean

    managed = world.truth.managed_dir
    key = next(k for k, c in world.truth.collections.items() if clean(c) and sum(
        f["path"].startswith(managed) for f in c["files"]) >= 4
        and k not in getattr(world, "used", ()))
    world.used = getattr(world, "used", set()) | {key}
    files = [f["path"] for f in world.truth.collections[key]["files"]
             if f["path"].startswith(managed)]
    outside = world.root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the repository\n")
    made = {}
    loop, escape, root, chain = files[:4]
    for path in (loop, escape, root, chain):
        os.unlink(path)
    os.symlink(loop, loop)  # a link to itself
    made[loop] = "loop"
    os.symlink(outside / "secret.txt", escape)
    made[escape] = "escapes to a file outside"
    os.symlink("/", root)
    made[root] = "link to /"
    os.symlink(chain + ".b", chain)
    os.symlink(chain, chain + ".b")  # a loop of two
    made[chain] = "loop of two"
    folder = os.path.dirname(loop)
    os.symlink(".", os.path.join(folder, "self-loop"))  # a directory loop beside them
    os.symlink("/", os.path.join(folder, "to-root"))
    return key, made, outside


def symlinks(world, quick):
    from omero_storagemanager.catalog.paths import RepositoryPaths
    from omero_storagemanager.engine.scan import scan
    from omero_storagemanager.models import Copy, PurgedFile

    t = Tally("symlink loops and links escaping the repository, in the managed repository")
    key, made, outside = hostile_links(world)
    kind, oid = key.split(":")
    outside_before = tree(outside)
    digest = sha1(outside / "secret.txt")
    paths = RepositoryPaths(world.truth.data_dir, world.truth.managed_dir)
    reports = {}
    for mode in ("stat", "verify"):
        started = time.monotonic()
        try:
            report = scan(world.conn, paths, mode, keys=[(kind.lower(), int(oid))])
            reports[mode] = report
            text = json.dumps(report.problems, default=str)
            seen = [p for p in made if p in text or os.path.relpath(p, world.truth.data_dir) in text]
            t.refusal(len(seen) == len(made), f"{mode} scan reports every bad link",
                      f"reported {len(seen)}/{len(made)}: {text[:300]}")
            t.refusal(time.monotonic() - started < 60, f"{mode} scan ends", "took > 60 s")
        except Exception as exc:  # noqa: BLE001
            t.refusal(False, f"{mode} scan", f"{type(exc).__name__}: {exc}")
    location = world.location("hdd", name="links")
    archived = False
    try:
        result = world.archive(key, location)
        archived = result.state in ("archived", "unchanged")
        t.refusal(True, "archive", "")
        copy = Copy.objects.filter(collection=world.collection(key), state=Copy.VERIFIED).first()
        if copy:  # what it copied of an escaping link is content, never a link
            bag = location.backend().write_root / copy.bag_path
            links = [p for p in bag.rglob("*") if p.is_symlink()]
            t.refusal(not links, "the bag holds no symlink", str(links[:3]))
    except Exception as exc:  # noqa: BLE001 - a refusal must be a clear error
        message = str(exc)
        t.refusal(bool(message) and "Traceback" not in message and len(message) < 2000,
                  "archive refuses clearly", f"{type(exc).__name__}: {message[:200]}")
    if archived:
        try:
            world.purge(key)
        except Exception as exc:  # noqa: BLE001
            t.refusal(bool(str(exc)), "purge refuses clearly", f"{type(exc).__name__}: {exc}")
        for row in PurgedFile.objects.filter(collection=world.collection(key)):
            t.refusal(os.path.realpath(row.path).startswith(world.truth.data_dir) or
                      os.path.islink(row.path) or not os.path.exists(row.path),
                      f"purge record {row.path} inside the repository", row.path)
    t.refusal(tree(outside) == outside_before and sha1(outside / "secret.txt") == digest,
              "nothing outside the repository changed", "the outside folder changed")
    t.refusal(os.path.isdir("/etc") and os.path.exists("/etc/passwd"), "/ untouched", "")
    for path, what in made.items():
        # The links themselves are the primary entries: purged only with a verified copy;
        # whatever they point to outside is never touched (checked above).
        pass
    return t, {m: {k: len(v) for k, v in r.problems.items()} for m, r in reports.items()}


# -- huge filesets -------------------------------------------------------------------------------

def huge_fileset(world, web, count):
    """`count` more entries in one fileset (OMERO rows only: the files are missing)."""
    import psycopg2

    from omero_storagemanager.catalog.paths import RepositoryPaths
    from omero_storagemanager.engine.scan import scan
    from tests.test_archive_faults import clean

    t = Tally(f"a fileset of {count:,} entries in the OMERO database")
    key = next(k for k, c in world.truth.collections.items() if clean(c) and any(
        f["kind"] == "fileset_entry" and f["originalfile_id"] for f in c["files"])
        and k not in getattr(world, "used", ()))
    template = next(f for f in world.truth.collections[key]["files"]
                    if f["kind"] == "fileset_entry" and f["originalfile_id"])
    conn = psycopg2.connect(world.dsn)
    started = time.monotonic()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT max(id) FROM originalfile")
        base_file = cur.fetchone()[0]
        cur.execute("SELECT max(id) FROM filesetentry")
        base_entry = cur.fetchone()[0]
        cur.execute("SELECT max(fileset_index) FROM filesetentry WHERE fileset = %s",
                    [template["fileset_id"]])
        index = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO originalfile (id, permissions, path, name, \"size\", hash, hasher,"
            " mimetype, repo, creation_id, group_id, owner_id, update_id, mtime, atime, ctime)"
            " SELECT %s + g, permissions, path, 'huge ' || g || '.tif', 4096,"
            " md5(g::text) || '00000000', hasher, mimetype, repo, creation_id, group_id,"
            " owner_id, update_id, mtime, atime, ctime FROM originalfile,"
            " generate_series(1, %s) g WHERE id = %s",
            [base_file, count, template["originalfile_id"]])
        cur.execute(
            "INSERT INTO filesetentry (id, permissions, clientpath, fileset, originalfile,"
            " fileset_index, creation_id, group_id, owner_id, update_id)"
            " SELECT %s + g, permissions, clientpath || '.' || g, fileset, %s + g, %s + g,"
            " creation_id, group_id, owner_id, update_id FROM filesetentry,"
            " generate_series(1, %s) g WHERE originalfile = %s",
            [base_entry, base_file, index, count, template["originalfile_id"]])
    conn.close()
    log(f"inserted {count} entries in {time.monotonic() - started:.1f} s")
    kind, oid = key.split(":")
    paths = RepositoryPaths(world.truth.data_dir, world.truth.managed_dir)
    figures = {}
    for mode in ("catalog", "stat"):
        tracemalloc.start()
        started = time.monotonic()
        report = scan(world.conn, paths, mode, keys=[(kind.lower(), int(oid))])
        seconds = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        files = report.figures[key].files
        figures[mode] = (seconds, peak, files)
        t.refusal(files >= count, f"{mode} scan counts every entry", f"{files} files")
        # Bounded: a few KB per file held at most (an inventory row each), not more.
        t.refusal(peak < 4096 * count + 64 * 2**20, f"{mode} scan memory",
                  f"peak {peak / 2**20:.0f} MiB for {files} files")
    admin = web.api("ingrid")
    for path, params in ((API + "collections/", {"q": key}), (f"{API}collections/{key}/", {}),
                         (API + "breakdown/", {"objects": f"{kind.lower()}-{oid}"}),
                         (API + "jobs/", {}), (API + "statistics/", {})):
        started = time.monotonic()
        response = admin.get(path, **params)
        seconds = time.monotonic() - started
        t.refusal(response.status_code == 200 and len(response.content) < 512 * 1024
                  and seconds < 30, f"GET {path}",
                  f"HTTP {response.status_code}, {len(response.content)} bytes, {seconds:.1f} s")
        figures[path] = (seconds, len(response.content))
    return t, figures


# -- settings ----------------------------------------------------------------------------------

BAD_VALUES = {
    "parse_db": "[1, 2]", "parse_path": "relative/path", "parse_boolean": "maybe",
    "parse_positive_int": "0", "parse_non_negative_int": "-1", "parse_optional_id": "-3",
    "parse_concurrency": '{"scan": 0}', "parse_notify": '["spam"]',
    "parse_emails": '["nobody"]', "parse_id_list": "[-1]",
    "parse_s3_credentials": '{"lab": {"access_key_id": "only-half"}}',
}


def bad_settings(workdir, quick):
    from omero_storagemanager import settings
    from testbed.omerodir import write_config

    t = Tally("every omero.web.storagemanager.* key with a malformed value")
    free_text = []
    keys = list(settings.CUSTOM_SETTINGS_MAPPINGS.items())
    if quick:
        seen, picked = set(), []
        for key, spec in keys:  # one key per parser
            if spec[2].__name__ not in seen:
                seen.add(spec[2].__name__)
                picked.append((key, spec))
        keys = picked[:5]
    for key, spec in keys:
        parser = spec[2]
        bad = BAD_VALUES.get(parser.__name__)
        if bad is None:
            free_text.append(key.rsplit(".", 1)[1])
            continue
        omerodir = Path(workdir) / "settings" / key.rsplit(".", 1)[1]
        write_config(omerodir, {"omero.web.apps": ["omero_storagemanager"], key: bad})
        env = dict(os.environ, OMERODIR=str(omerodir), DJANGO_SETTINGS_MODULE="omeroweb.settings",
                   PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env,
                              capture_output=True, text=True, timeout=120)
        t.refusal(proc.returncode != 0 and key in proc.stderr, f"{key}={bad!r}",
                  f"exit {proc.returncode}: {proc.stderr[-300:]}")
    return t, free_text


# -- the whole part ----------------------------------------------------------------------------

def run_part(server, workdir, quick=False, log=log):
    from tests.reliability.security import World as Web
    from tests.test_archive_faults import FaultWorld

    workdir = Path(workdir)
    world = FaultWorld(server, "bad_input_fac", workdir)
    world.dir = world.omerodir(workdir / "omerodir")
    figures = {}
    try:
        with Web(world, workdir / "web") as web:
            log("ids")
            figures["ids"] = bad_ids(world, web, real_cli=not quick, quick=quick)
            log("mounts")
            figures["mounts"] = bad_mounts(world, web, real_cli=not quick, quick=quick)
            log("names")
            figures["names"] = special_names(world, web)
            log("symlinks")
            figures["symlinks"], figures["symlink_problems"] = symlinks(world, quick)
            log("huge fileset")
            figures["huge"], figures["huge_figures"] = huge_fileset(
                world, web, 20_000 if quick else 100_000)
        log("settings")
        figures["settings"], figures["free_text_settings"] = bad_settings(workdir, quick)
    finally:
        world.conn.close()
        server.drop_database("bad_input_fac")
    return figures


def result_for(figures, command):
    rows, violations = [], []
    outcomes = {
        "ids": "404 for what the user may not see or does not exist, 400 for a malformed "
               "key, 403 for what they see but may not do; one line on the command line",
        "mounts": "400 naming the problem (API), one line (CLI); no location, no folder",
        "names": "XML orders parse and name their folder; e-mails parse; one log entry per "
                 "line; HTML escaped; names round-trip through the API and the quick filter",
        "symlinks": "scans report every bad link and end; archive copies content or refuses; "
                    "nothing outside the repository touched",
        "huge": "scans count every entry within the memory bound; API answers in pages",
        "settings": "start-up stops, the message names the key",
    }
    trials = 0
    for name in ("ids", "mounts", "names", "symlinks", "huge", "settings"):
        t = figures[name]
        rows.append(t.row(outcomes[name]))
        trials += t.trials
        violations += [f"{name}: {p}" for p in t.problems[:15]]
        violations += [f"{name}: changed {c}" for c in t.changed[:15]]
    huge = figures["huge_figures"]
    notes = [f"Huge fileset: {', '.join(f'{m} scan {s:.1f} s, peak {p / 2**20:.0f} MiB of Python memory for {n:,} files' for m, (s, p, n) in ((m, huge[m]) for m in ('catalog', 'stat')))}.",
             "Memory grows with the number of files of the collection scanned (about "
             f"{huge['stat'][1] / max(1, huge['stat'][2]) / 1024:.1f} KiB per file in a stat "
             "scan): a one-collection scan holds that collection's inventory in memory "
             "(engine/scan.py, InventoryReader.read); bounded, not constant.",
             f"Symlink scans found (problems per collection): {figures['symlink_problems']}.",
             "Free-text settings (any string is valid, so no malformed value exists): "
             + ", ".join(figures["free_text_settings"]) + "."]
    return {
        "part": "bad-input", "order": 50, "title": "Bad input", "command": command,
        "intro": (
            "Each class of bad input is fed through every way it comes in (JSON API through "
            "the real URLs and middleware as a plain user or an admin, the console script, "
            "the engine and its jobs) on a generated facility. Before and after each class "
            "the run snapshots every app table and every OMERO table (row count and "
            "checksum), the repository and the archive locations with their XML folders "
            "(every entry: type, size, mtime, mode, link target). A trial is one bad input "
            "(or one check of how a name came out); refused counts trials that ended as "
            "they must (a clear refusal, or the correct handling for names, links and "
            "sizes); changed counts what the class left changed that it must not."),
        "trials": trials, "lost": 0,
        "columns": ["class", "trials", "handled as required", "changed", "what must happen"],
        "rows": rows, "violations": violations, "notes": notes,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the pytest version")
    args = parser.parse_args(argv)
    command = ".venv/bin/python -m tests.reliability.bad_input" + (" --quick" if args.quick else "")
    from tests.reliability.security import standalone

    def part(facility, server, workdir):
        from tests.reliability.report import record

        result = result_for(run_part(server, workdir / "bad", quick=args.quick), command)
        record(result)
        return result

    result = standalone(part, command, make=False)
    from tests.reliability.report import conclude

    return conclude(result)


if __name__ == "__main__":
    sys.exit(main())
