"""Security, by numbers: permissions, CSRF, forged admin claims, secrets, SQL injection.

Issue 7 (reliability). One run:
  1. permission matrix: runs tests/test_permission_matrix.py in a pytest subprocess
     (junit XML) and counts its cases: every endpoint called by every kind of user, and
     every POST endpoint without its CSRF token;
  2. CSRF: every URL pattern of omero_storagemanager/urls.py (enumerated, not listed by
     hand) POSTed by an admin without the token: refused (403), nothing changed;
  3. forged admin: every admin URL pattern, GET and POST, called with a plain user's
     gateway that claims to be an admin everywhere except `is_admin()` (and one whose
     is_admin() is merely truthy): refused, nothing changed;
  4. secrets: a recognisable OMERO database password, app database password, SMTP
     password and OMERO service password are configured; a real django-q2 cluster runs
     jobs (scan, archive, a failing archive, backup with pg_dump, audit), a scan fails in
     process against an unreachable OMERO database, e-mails go to a real SMTP server that
     requires the SMTP password, every page and API endpoint is rendered as admin and as
     a plain user, the console script runs every verb's --help and error paths; then
     every response body, job log file, app table row, django-q2 task (arguments,
     results, queued payloads), e-mail, cluster log and captured output is searched for
     the secrets: goal 0 hits;
  5. SQL injection: hostile strings through every query parameter the views read
     (found in the source), on every GET endpoint (enumerated from urls.py), in path
     parameters, in the actions API, and in every CLI argument that reaches SQL: no 500,
     refusals are 4xx with a short JSON message (one clear line on the command line),
     and a checksum of every app table and every OMERO table is unchanged.

Full run (writes docs/reliability/security.json and re-renders docs/reliability.md):
    .venv/bin/python -m tests.reliability.security
The pytest test (tests/reliability/test_security.py) runs a quick version into a
temporary directory.
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
API = "/storagemanager/api/v1/"
CLI = shutil.which("omero-storagemanager", path=os.path.dirname(sys.executable))
SECRETS = {
    "OMERO database password": "omeroDbPw-S3cr3t-7Q2x",
    "app database password": "appDbPw-S3cr3t-K9v4",
    "SMTP password": "smtpPw-S3cr3t-Z3m8",
    "OMERO service password": "svcPw-S3cr3t-H5t1",
}
HOSTILE = [
    "' OR 1=1 --", "' OR '1'='1", "'); DROP TABLE storagemanager_job; --",
    "1; DROP TABLE storagemanager_collection; --", "\" OR \"\"=\"", "name) OR 1=1 --",
    "'; SELECT pg_sleep(5); --", "1 UNION SELECT omename FROM experimenter --",
    "%", "_", "\\", "%' --", "\x00", "a\x00b", "ünïcödé ✓ 漢字 🧪", "\u202e\u200b", "\ud7ff",
    "NULL", "-1", "9" * 40, "Project:99999999999999999999", "project:1 OR 1=1", "\n\r\t",
    "${7*7}", "{{7*7}}", "<script>alert(1)</script>", "../../../../etc/passwd",
    "x" * 100_000,
]
QUICK_HOSTILE = ["' OR 1=1 --", "'); DROP TABLE storagemanager_job; --", "\x00",
                 "ünïcödé ✓ 漢字 🧪", "x" * 100_000, "<script>alert(1)</script>"]
ALLOWED = (200, 400, 404, 414)  # what a GET with hostile input may answer (414: a huge query)
SQL_TRACES = ("syntax error", "psycopg", "Traceback", "ProgrammingError", "DataError",
              "unterminated", "pg_catalog")


def log(message):
    print(f"[security {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the world ----------------------------------------------------------------------------

class World:
    """The app pointed at a generated facility, collections synced, and one of each row
    the endpoints need (a current location, a copy, jobs with logs, a request)."""

    def __init__(self, facility, root):
        from omero_storagemanager import settings
        from tests.api_support import sync, user_ids

        self.facility, self.root = facility, Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._saved = {k: getattr(settings, k) for k in
                       ("OMERO_DB", "DATA_DIR", "MANAGED_DIR", "VAR_DIR", "SERVICE_PASSWORD")}
        settings.OMERO_DB = {"dsn": facility.dsn}
        settings.DATA_DIR = facility.truth.data_dir
        settings.MANAGED_DIR = facility.truth.managed_dir
        settings.VAR_DIR = str(self.root / "var")
        sync(facility)
        self.ids = user_ids(facility)
        self.made = {}
        self._override = None

    def __enter__(self):
        from tests.api_support import standin_middleware

        self._override = standin_middleware()
        self._override.__enter__()
        return self

    def __exit__(self, *exc):
        from omero_storagemanager import settings

        self._override.__exit__(*exc)
        for key, value in self._saved.items():
            setattr(settings, key, value)

    def populate(self):
        """A location with a verified copy, jobs with log folders, a pending request."""
        from omero_storagemanager.models import Collection, Copy, Job, Location, Request

        mount = self.root / "archive"
        mount.mkdir(exist_ok=True)
        location = Location.objects.create(name="disk", type="hdd", mount=str(mount),
                                           max_bytes=10**10, current=True)
        for sub in ("read", "write"):
            (mount / str(location.pk) / sub).mkdir(parents=True, exist_ok=True)
        c = Collection.objects.get(kind="project", omero_id=4)
        now = datetime.now(timezone.utc)
        Copy.objects.create(collection=c, location=location, bag_path=f"bag-{c.pk}",
                            state=Copy.VERIFIED, created=now, verified_at=now, files=1, bytes=10)
        log_dir = self.root / "joblog"
        log_dir.mkdir(exist_ok=True)
        (log_dir / "job.log").write_text("a line\n")
        job = Job.objects.create(kind="scan", state=Job.DONE, log_dir=str(log_dir),
                                 requested_by_id=c.owner_id, requested_by_name="chloe")
        job.collections.set([c])
        request = Request.objects.create(kind="archive", collection=c,
                                         requested_by_id=c.owner_id, requested_by_name="chloe")
        self.made = {"location": location.pk, "job": job.pk, "request": request.pk,
                     "key": c.key, "dataset": 6, "mount": str(mount)}
        return self.made

    def api(self, name):
        from tests.api_support import Api

        return Api(None if name is None else self.ids[name])


# -- row checksums ----------------------------------------------------------------------------

APP_PREFIXES = ("storagemanager_", "django_q_")


def _checksums(cur, tables):
    out = {}
    for table in tables:
        cur.execute(f'SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY '
                    f't::text), \'\')) FROM "{table}" t')
        out[table] = tuple(cur.fetchone())
    return out


def snapshot(facility):
    """{table: (rows, md5 of the rows)} of every app table and every OMERO table."""
    import psycopg2
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = sorted(t for (t,) in cur.fetchall() if t.startswith(APP_PREFIXES))
        app = _checksums(cur, tables)
    conn = psycopg2.connect(facility.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            omero = _checksums(cur, sorted(t for (t,) in cur.fetchall()))
    finally:
        conn.close()
    return {**{f"app.{k}": v for k, v in app.items()}, **{f"omero.{k}": v for k, v in omero.items()}}


def changed(before, after):
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


# -- endpoints, from urls.py ------------------------------------------------------------------

def url_patterns():
    """(route text, sample path, pattern) of every URL of the app, path parameters filled
    with placeholders {key} {pk} {dtype} {oid} {kind} {action}."""
    from omero_storagemanager import urls

    out = []
    for p in urls.urlpatterns:
        route = str(p.pattern)
        text = route.lstrip("^").rstrip("$")
        text = re.sub(r"\(\?P<(\w+)>[^/]*\)", r"{\1}", text)  # re_path groups
        text = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)  # path converters
        out.append((route, "/storagemanager/" + text, p))
    return out


def fill(template, made, ids=None):
    """A real path for a pattern, on the world's rows."""
    pk = made["job"]
    if "locations/" in template:
        pk = made["location"]
    elif "requests/" in template:
        pk = made["request"]
    return (template.replace("{key}", made["key"]).replace("{pk}", str(pk))
            .replace("{dtype}", "dataset").replace("{oid}", str(made["dataset"]))
            .replace("{kind}", "sync").replace("{action}", "rescan"))


def get_endpoints(made):
    """Paths of every URL that answers GET (pages and API), filled."""
    out = []
    for route, template, pattern in url_patterns():
        view = pattern.callback
        module = getattr(view, "__module__", "")
        if template.endswith(("/actions/", "/cancel/", "/retry/", "/approve/", "/decline/",
                              "/run/", "/test-email/", "/rescan/")) or "{action}" in template:
            continue
        del module
        out.append(fill(template, made))
    return out


def query_parameters():
    """Every query parameter the views read, found in their source (not listed by hand)."""
    names = set()
    for source in (REPO / "omero_storagemanager" / "views").glob("*.py"):
        text = source.read_text()
        names |= set(re.findall(r"(?:GET|params)\.(?:get|getlist)\(\s*\"(\w+)\"", text))
        names |= set(re.findall(r"_page_number\(request, \"(\w+)\"", text))
        names |= set(re.findall(r"_int\(params, \"(\w+)\"", text))
    return sorted(names | {"page", "per_page"})


def clear_refusal(response):
    """A refusal the user can read: JSON {"error": short text}, no SQL or traceback."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return False, "not JSON"
    message = body.get("error") or body.get("message") or ""
    if not message or not isinstance(message, str):
        return False, "no error message"
    if len(message) > 500:
        return False, f"message of {len(message)} characters"
    leaked = [t for t in SQL_TRACES if t.lower() in message.lower()]
    if leaked:
        return False, f"message shows {leaked}: {message[:200]}"
    return True, message


# -- 1. the permission matrix (pytest subprocess) ----------------------------------------------

def permission_matrix(workdir, select=None):
    """Run tests/test_permission_matrix.py; {test function: (cases, failed)}."""
    junit = Path(workdir) / "matrix.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "tests/test_permission_matrix.py", f"--junitxml={junit}"]
    if select:
        cmd += ["-k", select]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for key in ("DJANGO_SETTINGS_MODULE", "OMERODIR"):
        env.pop(key, None)
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=1800)
    if not junit.exists():
        raise RuntimeError("the permission matrix did not run:\n" + (proc.stdout + proc.stderr)[-3000:])
    counts = defaultdict(lambda: [0, 0, 0])  # cases, failed, skipped
    failures = []
    for case in ET.parse(junit).iter("testcase"):
        name = case.get("name", "").split("[")[0]
        counts[name][0] += 1
        if case.find("failure") is not None or case.find("error") is not None:
            counts[name][1] += 1
            failures.append(case.get("name"))
        if case.find("skipped") is not None:
            counts[name][2] += 1
    return dict(counts), failures


# -- 2. CSRF on every URL ---------------------------------------------------------------------

def csrf_everywhere(world):
    from omero_storagemanager.models import Job

    admin = world.api("ingrid")
    before = snapshot(world.facility)
    refused, bad = 0, []
    for route, template, _ in url_patterns():
        path = fill(template, world.made)
        body = {"action": "scan", "collections": [world.made["key"]], "name": "x",
                "type": "hdd", "mount": world.made["mount"], "max_bytes": "1 GB",
                "values": {"purge_rename": True}, "kind": "sync", "times": "01:00"}
        response = admin.post(path, body, csrf=False)
        text = response.content.decode(errors="replace")
        if response.status_code == 403 and "CSRF" in text:
            refused += 1
        else:
            bad.append(f"POST {path} without CSRF token: {response.status_code} {text[:150]}")
    after = snapshot(world.facility)
    diff = changed(before, after)
    if diff:
        bad.append(f"CSRF-less POSTs changed {diff}")
    return {"trials": len(url_patterns()), "refused": refused, "violations": bad,
            "jobs": Job.objects.count()}


# -- 3. forged admin claims -------------------------------------------------------------------

def forged_admin(world):
    from django.test import RequestFactory
    from django.urls import resolve

    from tests.test_api import ClaimsAdmin, TruthyAdmin

    before = snapshot(world.facility)
    trials, refused, bad, patterns = 0, 0, [], 0
    for route, template, _ in url_patterns():
        if "admin/" not in template or template.endswith("admin/requests/"):
            continue  # the approvals page is for group owners too (permission matrix)
        patterns += 1
        path = fill(template, world.made)
        statuses = []
        for gateway_class in (ClaimsAdmin, TruthyAdmin):
            for method in ("GET", "POST"):
                conn = gateway_class(world.facility.dsn, world.ids["chloe"])
                factory = RequestFactory()
                request = factory.get(path) if method == "GET" else factory.post(
                    path, json.dumps({"name": "forged", "type": "hdd",
                                      "mount": world.made["mount"], "max_bytes": 5,
                                      "values": {"purge_rename": True}}),
                    content_type="application/json")
                match = resolve(path)
                response = match.func(request, *match.args, conn=conn, **match.kwargs)
                trials += 1
                statuses.append(response.status_code)
                if response.status_code in (403, 405):  # 405: the method is not served
                    refused += 1
                else:
                    bad.append(f"{method} {path} with {gateway_class.__name__}: "
                               f"{response.status_code}")
        if 403 not in statuses:
            bad.append(f"{path}: never answered 403 to a forged admin ({statuses})")
    diff = changed(before, snapshot(world.facility))
    if diff:
        bad.append(f"forged admin calls changed {diff}")
    return {"trials": trials, "refused": refused, "patterns": patterns, "violations": bad}


# -- 4. secrets ---------------------------------------------------------------------------------

class Mailbox:
    """A real SMTP server (aiosmtpd) that requires a login with the SMTP password."""

    USER = "omero-mailer"

    def __init__(self, password):
        try:
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import AuthResult, LoginPassword
        except ImportError as exc:  # pragma: no cover - the dev environment has it
            raise RuntimeError("install aiosmtpd (pip install aiosmtpd) for the secrets "
                               "check") from exc
        from testbed.pg import free_port

        self.messages, self.logins = [], []
        box = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and \
                auth_data.password.decode() == password and \
                auth_data.login.decode() == Mailbox.USER
            box.logins.append(ok)
            return AuthResult(success=ok)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                box.messages.append(envelope.content.decode("utf-8", "replace"))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     authenticator=authenticator, auth_required=True,
                                     auth_require_tls=False)
        self.controller.start()

    def stop(self):
        self.controller.stop()

    def wait(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return len(self.messages)


def secret_config(world, server, mailbox, var_dir, omero_port=None):
    """config.xml keys of an OMERO.web whose every password is one of SECRETS."""
    from testbed.omerodir import django_db, libpq_params, q_cluster, web_config

    app_db = dict(django_db(server, "omeroweb_app"), PASSWORD=SECRETS["app database password"])
    omero_db = dict(libpq_params(server, world.facility.name),
                    password=SECRETS["OMERO database password"])
    if omero_port:
        omero_db["port"] = omero_port
    cluster = dict(q_cluster(), timeout=60, retry=70, workers=2, poll=0.2)
    return web_config(
        app_db=app_db, omero_db=omero_db, data_dir=world.facility.truth.data_dir,
        managed_dir=world.facility.truth.managed_dir, var_dir=var_dir, extra={
            "omero.web.django_additional_settings": [["Q_CLUSTER", cluster]],
            "omero.web.storagemanager.heartbeat_timeout": "15",
            "omero.web.storagemanager.copy_workers": "1",
            "omero.web.storagemanager.admin_emails": ["storage-admin@example.org"],
            "omero.web.storagemanager.service_user": "sm-service",
            "omero.web.storagemanager.service_password": SECRETS["OMERO service password"],
            "omero.web.storagemanager.pg_bin_dir": str(server.bindir),
            "omero.mail.host": "127.0.0.1", "omero.mail.port": str(mailbox.port),
            "omero.mail.username": Mailbox.USER,
            "omero.mail.password": SECRETS["SMTP password"],
            "omero.mail.from": "omero@example.org"})


@contextlib.contextmanager
def captured_output(path):
    """Everything written to fds 1 and 2 and to Python logging, into `path`."""
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    handler = None
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        handler = logging.StreamHandler(open(path, "a"))
        handler.setLevel(logging.DEBUG)
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            root.removeHandler(handler)
            root.setLevel(old_level)
            handler.stream.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _call_as(path, world, name):
    """Call a view as OMERO.web would, with a stand-in gateway made on the facility's
    database whatever the app's OMERO database setting says."""
    from django.test import RequestFactory
    from django.urls import resolve

    from testbed.standin import StandInGateway

    match = resolve(path)
    conn = StandInGateway(world.facility.dsn, world.ids[name])
    return match.func(RequestFactory().get(path), *match.args, conn=conn, **match.kwargs)


def _wait_jobs(jobs, timeout):
    from omero_storagemanager.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = list(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("state", flat=True))
        if all(s in (Job.DONE, Job.FAILED, Job.CANCELLED) for s in states):
            return True
        time.sleep(0.3)
    return False


def run_cli(omerodir, *args, timeout=120):
    from tests.test_archive_faults import cli_env

    if CLI is None:
        raise RuntimeError("the console script omero-storagemanager is not installed: "
                           "pip install -e . in the virtualenv")
    return subprocess.run([CLI, *args], env=cli_env(omerodir), capture_output=True,
                          text=True, timeout=timeout)


def cli_runs(quick):
    """(args) of the console-script runs of the secrets check: every verb's --help and
    the error paths (unknown collection, location, bad mount, failed job's log)."""
    from omero_storagemanager.verbs import VERBS

    helps = [("--help",)] + [(verb, "--help") for verb in VERBS]
    errors = [("check",), ("stats",), ("jobs", "list", "--all"), ("location", "list"),
              ("scan", "Project:999999"), ("archive", "Project:1", "--location", "99"),
              ("location", "add", "X", "--type", "hdd", "--mount", "/no/such/mount",
               "--max-size", "1TB"), ("backup", "list"), ("inventory", "Project:424242"),
              ("jobs", "show", "{failed}", "--log"), ("backup", "restore", "nonexistent")]
    if quick:
        helps = [("--help",), ("location", "--help")]
        errors = [("check",), ("scan", "Project:999999"), ("jobs", "show", "{failed}", "--log")]
    return helps + errors


def gather_texts(world, var_dirs, mailbox, extra):
    """{source: [texts]} of everything a secret might leak into."""
    from django.db import connection
    from django_q.models import Failure, OrmQ, Schedule, Success, Task

    sources = defaultdict(list)
    for var in var_dirs:
        for path in Path(var).rglob("*"):
            if path.is_file() and path.suffix != ".dump":
                sources["job log files"].append(path.read_text(errors="replace"))
    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
                    "tablename LIKE 'storagemanager%%'")
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT t::text FROM "{table}" t')
            name = "Job rows" if table == "storagemanager_job" else "other app rows"
            sources[name] += [row for (row,) in cur.fetchall()]
    for model in (Task, Success, Failure):
        for task in model.objects.all():
            sources["django-q2 tasks and results"].append(
                " ".join(str(x) for x in (task.name, task.func, task.args, task.kwargs,
                                          task.result, task.group)))
    for schedule in Schedule.objects.all():
        sources["django-q2 tasks and results"].append(str(schedule.__dict__))
    from django_q.signing import SignedPackage

    for queued in OrmQ.objects.all():
        try:
            sources["django-q2 tasks and results"].append(str(SignedPackage.loads(queued.payload)))
        except Exception:  # noqa: BLE001 - a payload of another key: keep the raw text
            sources["django-q2 tasks and results"].append(queued.payload)
    sources["e-mails"] += mailbox.messages
    for name, texts in extra.items():
        sources[name] += texts
    return sources


def count_secrets(sources):
    """{source: (items, {secret name: hits})}."""
    out = {}
    for name, texts in sources.items():
        hits = {secret: sum(text.count(value) for text in texts)
                for secret, value in SECRETS.items()}
        out[name] = (len(texts), hits)
    return out


def secrets_check(world, server, quick=False, log=log):
    """Run jobs, pages and the CLI with every password configured; count the secrets found."""
    from django.conf import settings as django_settings
    from django.db import connection
    from django.test import override_settings

    from omero_storagemanager import preferences, settings
    from omero_storagemanager.engine.locations import add_location
    from omero_storagemanager.models import Collection, Job
    from omero_storagemanager.tasks import queue
    from omero_storagemanager.tasks.runner import run_job
    from testbed.omerodir import write_config
    from tests.test_jobs import Cluster

    root = world.root / "secrets"
    root.mkdir(parents=True, exist_ok=True)
    mailbox = Mailbox(SECRETS["SMTP password"])
    responses, cli_out, notes = [], [], []
    inproc_log = root / "in-process-output.txt"
    cluster_log = root / "qcluster.log"
    cluster_var, inproc_var = root / "cluster-var", Path(settings.VAR_DIR)
    omerodir, offline_dir = root / "omerodir", root / "omerodir-offline"
    write_config(omerodir, secret_config(world, server, mailbox, cluster_var))
    write_config(offline_dir, secret_config(world, server, mailbox, cluster_var, omero_port=1))
    truth = world.facility.truth
    omero_db = {"host": server.host, "port": server.port, "name": world.facility.name,
                "user": "postgres", "password": SECRETS["OMERO database password"]}
    saved_db_password = connection.settings_dict.get("PASSWORD")
    try:
        # -- jobs on a real cluster configured with every secret -----------------------
        mount = root / "disk"
        mount.mkdir()
        location = add_location("secret disk", "hdd", str(mount), 10**10, current=True)
        clean = next(k for k, c in truth.collections.items() if c["files"] and not any(
            f["missing"] or "db_size" in f or f["symlink_target"] for f in c["files"]))
        broken = next(k for k, c in truth.collections.items()
                      if any(f["missing"] for f in c["files"]))

        def coll(key):
            kind, oid = key.split(":")
            return Collection.objects.get(kind=kind.lower(), omero_id=int(oid))

        preferences.set_many({"admin_emails": ["storage-admin@example.org"]})
        cluster = Cluster(omerodir, cluster_log)
        try:
            jobs = [queue.submit("scan", list(Collection.objects.filter(gone=False)[:3]),
                                 params={"mode": "stat"}, requested_by=(0, "root")),
                    queue.submit("archive", [coll(clean)], location, requested_by=(0, "root")),
                    queue.submit("archive", [coll(broken)], location, requested_by=(0, "root"))]
            if not quick:
                jobs.append(queue.submit("backup", requested_by=(0, "root")))
                jobs.append(queue.submit("audit", location=location, params={"fraction": 1.0},
                                         requested_by=(0, "root")))
            if not _wait_jobs(jobs, 180):
                notes.append("some cluster jobs did not finish in 180 s")
        finally:
            cluster.stop()
        states = {j.kind + (" (missing files)" if i == 2 else ""): Job.objects.get(pk=j.pk).state
                  for i, j in enumerate(jobs)}
        log(f"cluster jobs: {states}")

        # -- in process: a job failing on the OMERO database, pages, e-mail ------------
        settings.SERVICE_PASSWORD = SECRETS["OMERO service password"]
        connection.settings_dict["PASSWORD"] = SECRETS["app database password"]
        mail = override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=mailbox.port,
                                 EMAIL_HOST_USER=Mailbox.USER,
                                 EMAIL_HOST_PASSWORD=SECRETS["SMTP password"],
                                 SERVER_EMAIL="omero@example.org")
        with captured_output(inproc_log), mail:
            settings.OMERO_DB = dict(omero_db, port=1)
            failing = queue.submit("scan", [coll(clean)], params={"mode": "stat"},
                                   requested_by=(0, "root"), dispatch_now=False)
            run_job(failing.pk)
            failing.refresh_from_db()
            for path in (API + "status/", "/storagemanager/"):
                # The stand-in gateway is the test bed's: it is made while the database
                # answers, as OMERO.web's session would be; the app's catalog then fails.
                responses.append(_call_as(path, world, "ingrid").content.decode(errors="replace"))
            settings.OMERO_DB = dict(omero_db)
            admin = world.api("ingrid")
            for who in ("ingrid", "chloe"):
                api = world.api(who)
                for path in get_endpoints(world.made):
                    responses.append(api.get(path).content.decode(errors="replace"))
                for job in Job.objects.all():
                    for name in ("job.log", "errors.txt", "files.txt"):
                        responses.append(api.get(f"{API}jobs/{job.pk}/log/", file=name)
                                         .content.decode(errors="replace"))
                    responses.append(api.get(f"{API}jobs/{job.pk}/").content.decode(errors="replace"))
            sent = admin.post(API + "admin/test-email/")
            responses.append(sent.content.decode(errors="replace"))
            if sent.status_code != 200:
                notes.append(f"test e-mail answered {sent.status_code}: {sent.content[:200]!r}")
        if failing.state != Job.FAILED or "unreachable" not in failing.error:
            notes.append(f"the in-process scan did not fail on the database: {failing.state} "
                         f"{failing.error!r}")
        mailbox.wait(3, timeout=15)

        # -- the console script ---------------------------------------------------------------
        failed_job = Job.objects.filter(state=Job.FAILED).order_by("pk").first()
        for args in cli_runs(quick):
            args = [a.replace("{failed}", str(failed_job.pk if failed_job else 1)) for a in args]
            proc = run_cli(omerodir, *args)
            cli_out.append(proc.stdout + proc.stderr)
        for args in ([("check",), ("scan", "--all")] if not quick else [("check",)]):
            proc = run_cli(offline_dir, *args)
            cli_out.append(proc.stdout + proc.stderr)
            if proc.returncode == 0:
                notes.append(f"`{' '.join(args)}` with the OMERO database unreachable exited 0")
    finally:
        connection.settings_dict["PASSWORD"] = saved_db_password
        settings.SERVICE_PASSWORD = world._saved["SERVICE_PASSWORD"]
        settings.OMERO_DB = {"dsn": world.facility.dsn}
        mailbox.stop()
    extra = {"HTTP responses": responses, "console script output": cli_out,
             "cluster output (qcluster.log)": [cluster_log.read_text(errors="replace")
                                               if cluster_log.exists() else ""],
             "in-process output and logging": [inproc_log.read_text(errors="replace")
                                               if inproc_log.exists() else ""]}
    sources = gather_texts(world, [cluster_var, inproc_var], mailbox, extra)
    counts = count_secrets(sources)
    positive = {"SMTP logins with the SMTP password": sum(mailbox.logins),
                "e-mails received": len(mailbox.messages),
                "failed job mentions the database": int("unreachable" in (failing.error or "")),
                "cluster jobs": states}
    return {"counts": counts, "positive": positive, "notes": notes,
            "django_settings_password": bool(django_settings.EMAIL_HOST_PASSWORD)}


# -- 5. SQL injection ---------------------------------------------------------------------------

def injection(world, hostile=HOSTILE, users=("alice", "ingrid"), rotate=False, log=log):
    """Hostile strings through every parameter of every GET endpoint and the CLI."""
    from django.core.management import CommandError, call_command

    params = query_parameters()
    endpoints = get_endpoints(world.made)
    before = snapshot(world.facility)
    counts = defaultdict(int)  # status -> n
    unclear, bad, trials = [], [], 0
    started = time.monotonic()

    baseline = {}

    def check(label, response, allowed=ALLOWED):
        nonlocal trials
        trials += 1
        counts[response.status_code] += 1
        if response.status_code not in allowed:
            bad.append(f"{label}: HTTP {response.status_code}: {response.content[:150]!r}")
        elif response.status_code != 200 and "/api/" in label:
            ok, why = clear_refusal(response)
            if not ok:
                unclear.append(f"{label}: {why}")

    turn = 0
    for who in users:
        api = world.api(who)
        for path in endpoints:  # what the user gets without hostile input (403 for a
            baseline[who, path] = api.get(path).status_code  # page not theirs) is fine too
        for index, text in enumerate(hostile):
            short = repr(text)[:30]
            turn = 0
            for path in endpoints:
                for name in params:
                    turn += 1
                    if rotate and turn % len(hostile) != index and len(text) < 1000:
                        continue  # quick: each (endpoint, parameter) with one string,
                        # and every one with the huge string
                    check(f"{who} GET {path}?{name}={short}", api.get(path, **{name: text}),
                          set(ALLOWED) | {baseline[who, path]})
                if "/collections/" in path and path.endswith("api/v1/collections/"):
                    for rule in (f"name contains {text}", f"owner is '{text}'",
                                 f"size above {text}", f"last access before {text}"):
                        check(f"{who} GET {path}?rule={rule[:30]!r}", api.get(path, rule=rule))
            quoted = urllib.parse.quote(text, safe="")
            for path in (f"{API}collections/{quoted}/", f"{API}objects/{quoted}/1/",
                         f"{API}jobs/{quoted}/", f"{API}breakdown/?objects=project-{quoted}"):
                check(f"{who} GET path {short}", api.client.get(path))
            for body in ({"action": "scan", "collections": [text]},
                         {"action": text, "collections": [world.made["key"]]},
                         {"action": "scan", "collections": [world.made["key"]], "mode": text}):
                response = api.post(API + "actions/", body)
                trials += 1
                counts[response.status_code] += 1
                if response.status_code not in (400, 403, 404, 409):
                    bad.append(f"{who} POST actions {body!r:.60}: HTTP {response.status_code}")
    # The command line: every argument that reaches SQL (collection keys, names).
    cli_trials, cli_bad = 0, []
    for text in hostile:
        if "\x00" in text:
            continue  # an argv cannot hold NUL: the shell never passes one
        for args in (("scan", text), ("inventory", text), ("archive", text),
                     ("purge", "--dry-run", text), ("restore", text),
                     ("jobs", "submit", "scan", text), ("backup", "restore", text),
                     ("schedule", "set", "sync", text),
                     ("location", "add", text, "--type", "hdd", "--mount", "/no/such/dir",
                      "--max-size", "1TB")):
            if args[0] == "schedule" and not text.strip():
                continue  # blank times are valid: "empty to disable" (verb's help)
            cli_trials += 1
            out, err = _StringIO(), _StringIO()
            try:
                call_command("storagemanager", *args, stdout=out, stderr=err)
                cli_bad.append(f"{args[:2]} {text[:30]!r} was accepted")
            except CommandError as exc:
                message = str(exc)
                if not message or any(t.lower() in message.lower() for t in SQL_TRACES) \
                        or len(message.splitlines()) > 2:
                    cli_bad.append(f"{args[:2]} {text[:30]!r}: unclear: {message[:200]}")
            except SystemExit as exc:
                if not exc.code:
                    cli_bad.append(f"{args[:2]} {text[:30]!r}: exit 0")
            except Exception as exc:  # noqa: BLE001 - a traceback on the command line
                cli_bad.append(f"{args[:2]} {text[:30]!r}: {type(exc).__name__}: {exc}"[:300])
    diff = changed(before, snapshot(world.facility))
    if diff:
        bad.append(f"hostile input changed {diff}")
    log(f"injection: {trials} HTTP + {cli_trials} CLI trials in {time.monotonic() - started:.0f} s")
    return {"trials": trials, "statuses": dict(counts), "violations": bad, "unclear": unclear,
            "cli_trials": cli_trials, "cli_violations": cli_bad, "params": params,
            "endpoints": len(endpoints), "values": len(hostile), "changed": diff}


class _StringIO:
    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)

    def flush(self):
        pass

    def isatty(self):
        return False


# -- the whole part -------------------------------------------------------------------------------

def run_part(facility, server, workdir, quick=False, log=log):
    """Every check; returns the record for report.record()."""

    figures = {}
    log("permission matrix (pytest subprocess)")
    started = time.monotonic()
    figures["matrix"] = permission_matrix(
        workdir, select="status or csrf or admin_preferences" if quick else None)
    figures["matrix_seconds"] = time.monotonic() - started
    world = World(facility, Path(workdir) / "world")
    with world:
        world.populate()
        log("CSRF on every URL")
        figures["csrf"] = csrf_everywhere(world)
        log("forged admin claims")
        figures["forged"] = forged_admin(world)
        log("SQL injection")
        figures["injection"] = injection(world, QUICK_HOSTILE if quick else HOSTILE,
                                         ("alice",) if quick else ("alice", "ingrid"),
                                         rotate=quick, log=log)
        log("secrets")
        figures["secrets"] = secrets_check(world, server, quick=quick, log=log)
    return figures


def result_for(figures, command):
    (matrix, failures) = figures["matrix"]
    rows, violations = [], []
    cases = sum(c for c, _, _ in matrix.values())
    skipped = sum(s for _, _, s in matrix.values())
    for name, (n, f, s) in sorted(matrix.items()):
        what = {"test_permission_matrix": "permission matrix: endpoint x role, expected status",
                "test_posts_without_csrf_token_are_refused":
                    "POST endpoints without CSRF token (tests/test_permission_matrix.py)"}.get(name, name)
        rows.append([what, n, f + s, f"{n - f - s} passed, {f} failed, {s} skipped"])
    violations += [f"permission matrix failed: {x}" for x in failures]
    if skipped:
        violations.append(f"permission matrix: {skipped} cases skipped")
    csrf = figures["csrf"]
    rows.append(["every URL of urls.py POSTed by an admin without CSRF token", csrf["trials"],
                 len(csrf["violations"]), f"{csrf['refused']} refused with 403, nothing changed"])
    violations += csrf["violations"]
    forged = figures["forged"]
    rows.append(["admin URLs (GET and POST) with a gateway forging admin claims",
                 forged["trials"], len(forged["violations"]),
                 f"{forged['patterns']} admin URL patterns; {forged['refused']} refused "
                 "(403, or 405 for an unserved method); nothing changed"])
    violations += forged["violations"]
    sec = figures["secrets"]
    hits_total = 0
    for source, (items, hits) in sorted(sec["counts"].items()):
        n = sum(hits.values())
        hits_total += n
        rows.append([f"secrets in {source}", items, n,
                     "none found" if not n else ", ".join(f"{k}: {v}" for k, v in hits.items() if v)])
        if n:
            violations.append(f"secret found in {source}: "
                              + ", ".join(f"{k} x{v}" for k, v in hits.items() if v))
    pos = sec["positive"]
    if not pos["SMTP logins with the SMTP password"] or not pos["e-mails received"] \
            or not pos["failed job mentions the database"]:
        violations.append(f"the secrets check did not exercise what it claims: {pos}")
    violations += [f"secrets check: {n}" for n in sec["notes"]]
    inj = figures["injection"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(inj["statuses"].items()))
    rows.append(["hostile strings in every query parameter, path parameter and actions body",
                 inj["trials"], len(inj["violations"]) + len(inj["unclear"]),
                 f"{inj['endpoints']} GET endpoints x {len(inj['params'])} parameters "
                 f"({', '.join(inj['params'])}) x {inj['values']} strings; statuses {statuses}; "
                 f"row checksums of every app and OMERO table unchanged: {not inj['changed']}"])
    rows.append(["hostile strings in every CLI argument reaching SQL", inj["cli_trials"],
                 len(inj["cli_violations"]), "each refused in one clear line, nothing changed"])
    violations += inj["violations"][:20] + inj["unclear"][:20] + inj["cli_violations"][:20]
    trials = cases + csrf["trials"] + forged["trials"] + inj["trials"] + inj["cli_trials"] + sum(
        items for items, _ in sec["counts"].values())
    return {
        "part": "security", "order": 60, "title": "Security", "command": command,
        "intro": (
            "Each row is a class of attack and how many tries of it were made; a try that "
            "got through is a failure (goal 0). The permission matrix and its CSRF cases "
            "are tests/test_permission_matrix.py, run in a pytest subprocess and counted "
            "from its JUnit XML. The CSRF and forged-admin rows enumerate the URL patterns "
            "of omero_storagemanager/urls.py. For the secrets rows a recognisable OMERO "
            "database password, app database password, SMTP password and OMERO service "
            "password are configured (config.xml, as `omero config set` writes it); a real "
            "django-q2 cluster runs a scan, an archive, a failing archive, a backup (pg_dump) "
            "and an audit; a scan fails in process on an unreachable OMERO database; mail "
            "goes to a real SMTP server that requires the SMTP password; every page and API "
            "endpoint is rendered as an admin and as a plain user, with every job's log; "
            "the console script runs every verb's --help and error paths, also with the "
            "OMERO database unreachable. The items searched are counted in the tries column, "
            "the secrets found in the failures column. SQL injection: hostile strings "
            "(quotes, comments, DROP TABLE, UNION, NUL, unicode, RTL marks, 100,000 "
            "characters, ...) in every query parameter the views read, on every GET "
            f"endpoint, as a plain user and an admin; secrets found in all: {hits_total}."),
        "trials": trials, "lost": 0,
        "columns": ["attack", "tries", "failures", "outcome"],
        "rows": rows, "violations": violations,
        "notes": [
            f"The secrets check's own proof that it used them: {pos}.",
            f"Permission matrix run time: {figures['matrix_seconds']:.0f} s.",
            "NUL bytes are not tried on the command line: an argv cannot carry one.",
        ],
    }


def make_facility(server, root, name="security_fac"):
    from testbed.fixtures import Facility
    from testbed.generator import generate_facility
    from testbed.omerodb import create_omero_database

    dsn = create_omero_database(server, name)
    truth = generate_facility(dsn, Path(root) / "facility", seed=1)
    return Facility(server, name, dsn, Path(root) / "facility", truth)


def bootstrap():
    """Start PostgreSQL and set up omeroweb.settings as the pytest plugin does."""
    sys.path.insert(0, str(REPO))
    from testbed import fixtures

    fixtures.pytest_configure(None)
    return fixtures


def standalone(part_runner, argv_command, log=log, make=True):
    """Boot the test bed, run `part_runner(facility, server, workdir)`, clean up
    (facility None when make is False: the part generates its own)."""
    import signal

    fixtures = bootstrap()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = fixtures._state["server"]
    workdir = Path(tempfile.mkdtemp(prefix="sm-reliability-"))
    workdir.chmod(0o755)
    try:
        facility = make_facility(server, workdir) if make else None
        return part_runner(facility, server, workdir)
    finally:
        fixtures.pytest_unconfigure(None)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(fixtures._state.get("base", ""), ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the pytest version")
    args = parser.parse_args(argv)
    command = ".venv/bin/python -m tests.reliability.security" + (" --quick" if args.quick else "")

    def part(facility, server, workdir):
        from tests.reliability.report import record

        figures = run_part(facility, server, workdir, quick=args.quick)
        result = result_for(figures, command)
        record(result)
        return result

    result = standalone(part, command)
    from tests.reliability.report import conclude

    return conclude(result)


if __name__ == "__main__":
    sys.exit(main())
