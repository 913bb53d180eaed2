"""The kill -9 matrix's trials on real services: a django-q2 cluster, and OMERO.web.

See tests/reliability/matrix.py for what a trial is and what it counts. Here:
  - worker trials: the job is submitted with tasks.queue.submit (as the UI's action
    does) and runs on `manage.py qcluster`; the worker process running it (Job.worker)
    or the whole cluster process group is SIGKILLed at the trial's kill point; then the
    app must end the job DONE on its own;
  - web trials: gunicorn on omeroweb.wsgi (the demo's settings: a stand-in Gateway for
    the user signed in at /demo/) and a cluster; the action is POSTed to the JSON API
    while pages are fetched; gunicorn's workers or its master are SIGKILLed during the
    POST; OMERO.web comes back (respawned by the master, or started again) and the
    client retries what got no answer.
Every process started here runs in its own session (process group), and is killed by
that group only.
"""
import http.client
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.reliability.matrix import (KILL_BOUND, REPO, Setup, Trial, check_after_kill,
                                      check_end, run_guarded)

# django-q2 and app settings of the trials' cluster: production runs hours-long jobs
# with timeout/retry of hours; this Screen's jobs take seconds, so the same rules
# (retry > timeout > the longest job; heartbeat_timeout > the heartbeat interval, 5 s)
# are scaled down, or a killed task would wait hours for its redelivery.
Q_SETTINGS = {"timeout": 10, "retry": 12, "workers": 2, "poll": 0.2}
HEARTBEAT_TIMEOUT = 8
JOB_BOUND = 150  # seconds from the kill to the job's end
WEB_UP_BOUND = 60  # seconds for OMERO.web to answer after a (re)start
ENDED = ("done", "failed", "cancelled")
NO_ANSWER = (OSError, http.client.HTTPException)  # refused, reset, closed, cut short
PAGES = ("/storagemanager/", "/storagemanager/collections/", "/storagemanager/jobs/",
         "/storagemanager/statistics/", "/storagemanager/api/v1/status/",
         "/storagemanager/api/v1/collections/", "/storagemanager/api/v1/jobs/")


def manage_py():
    import omeroweb

    return str(Path(omeroweb.__file__).parent / "manage.py")


def services_omerodir(s, web=False):
    """The trial's OMERODIR for the cluster (and OMERO.web): the run's app database, the
    trial's facility, its own var dir; the web's Django secret key shared, as
    docs/jobs.md asks (django-q2 signs tasks with it)."""
    from testbed.omerodir import django_db, q_cluster, web_config, write_config
    from tests.test_archive_faults import APP_DB

    extra = {
        "omero.web.django_additional_settings": [["Q_CLUSTER", dict(q_cluster(), **Q_SETTINGS)]],
        "omero.web.storagemanager.heartbeat_timeout": str(HEARTBEAT_TIMEOUT),
        "omero.web.storagemanager.copy_workers": "2",
    }
    extra.update({f"omero.web.storagemanager.{k}": str(v)
                  for k, v in s.omerodir_settings().items()})
    if web:  # as testbed/demo.py: cache files shared by gunicorn's workers
        extra.update({
            "omero.web.storagemanager.demo": "true",
            "omero.web.caches": {"default": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(s.root / "cache")}},
        })
    omerodir = s.root / "omerodir"
    write_config(omerodir, web_config(
        app_db=django_db(s.server, APP_DB), omero_db={"dsn": s.world.dsn},
        data_dir=s.world.truth.data_dir, managed_dir=s.world.truth.managed_dir,
        var_dir=s.root / "var", extra=extra))
    source = Path(os.environ["OMERODIR"], "var", "django_secret_key")
    target = omerodir / "var" / "django_secret_key"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    target.chmod(0o600)
    return omerodir


def install_monitor():
    """The monitor schedule as migration 0004 installs it (the trial emptied the
    django_q tables, the schedule with them)."""
    import importlib

    from django.apps import apps

    importlib.import_module("omero_storagemanager.migrations.0004_monitor_schedule").install(
        apps, None)


def service_env(omerodir, settings_module="omeroweb.settings"):
    return dict(os.environ, OMERODIR=str(omerodir), DJANGO_SETTINGS_MODULE=settings_module,
                PYTHONPATH=str(REPO))


class Group:
    """A service started in its own session: killed by its process group only."""

    def __init__(self, args, env, log):
        self.log_path = Path(log)
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(args, env=env, cwd=str(REPO), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid

    def members(self):
        """pids of the processes still in the group."""
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getpgid(int(entry)) == self.pgid:
                        out.append(int(entry))
                except (ProcessLookupError, PermissionError):
                    pass
        return out

    def kill(self):
        """SIGKILL the whole group, reap the leader, and wait until every member is dead
        (its writes over), as the console trials wait for their process."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        wait_dead(self.members())
        self._log.close()

    def stop(self):
        """End of trial: SIGKILL whatever is left of the group (the services are idle, or
        their state is already checked), and wait until none is left."""
        self.kill()
        deadline = time.monotonic() + 10
        while self.members() and time.monotonic() < deadline:
            time.sleep(0.05)


class Cluster(Group):
    def __init__(self, omerodir, log, settings_module="omeroweb.settings"):
        # OMERO.web's logging (hence django-q2's) goes to OMERODIR/var/log/OMEROweb.log.
        self.web_log = Path(omerodir, "var", "log", "OMEROweb.log")
        self.offset = self.web_log.stat().st_size if self.web_log.exists() else 0
        super().__init__([sys.executable, manage_py(), "qcluster"],
                         service_env(omerodir, settings_module), log)

    def wait_ready(self, bound=60):
        """Until the cluster says it is running (its guard loop has started)."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if self.web_log.exists():
                with open(self.web_log, "rb") as f:
                    f.seek(self.offset)
                    if re.search(rb"Q Cluster .* running\.", f.read()):
                        return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the cluster did not start: {self.log_path.read_text()[-800:]}")


def judge_job(trial, job, bound):
    """Wait for the job to end; anything but DONE within the bound is stuck. Returns
    1 when it ended DONE (the end state is then checked), else 0."""
    from tests.reliability.faults import poll_job

    poll_job(job.pk, lambda j: j.state in ENDED, bound, interval=0.1)
    job.refresh_from_db()  # the caller's row too: it reads the end state from it
    if job.state not in ENDED:
        trial.stuck += 1
        trial.notes.append(f"job {job.pk} still {job.state} {bound} s after the kill "
                           f"(attempts {job.attempts}, {job.wait_reason!r})")
        return 0
    trial.attempts = job.attempts
    if job.started and job.finished:
        trial.job_seconds = max(trial.job_seconds, (job.finished - job.started).total_seconds())
    if job.state != "done":
        trial.stuck += 1
        trial.notes.append(f"job {job.pk} ended {job.state}: {job.error or 'no reason given'}")
        return 0
    return 1


# -- worker trials --------------------------------------------------------------------------

def run_worker_trial(server, index, operation, kill, seed, workdir, setup=Setup):
    trial = Trial(index, operation, "", kind="worker")

    def body():
        from omero_storagemanager.models import Job
        from omero_storagemanager.tasks import queue

        s = setup(server, trial, kill, seed, workdir)
        clusters = []
        try:
            omerodir = services_omerodir(s)
            install_monitor()
            clusters.append(Cluster(omerodir, s.root / "qcluster-0.log"))
            clusters[-1].wait_ready()
            job = queue.submit(operation, [s.world.collection(s.key)],
                               s.location if operation == "archive" else None,
                               requested_by=(0, "root"))
            condition = s.condition(time.monotonic())
            deadline = time.monotonic() + KILL_BOUND
            while time.monotonic() < deadline:
                job.refresh_from_db()
                if job.state in ENDED or condition():
                    break
                time.sleep(0.01)
            trial.killed = job.state not in ENDED
            if trial.killed:
                kill_worker(trial, s, job, clusters, omerodir)
                check_after_kill(trial, s)
            check_end(trial, s, judge_job(trial, job, JOB_BOUND))
            if trial.attempts > 1 and "resuming" not in Path(
                    job.log_dir, "job.log").read_text():
                trial.notes.append("job log does not say it resumed")
            jobs = Job.objects.filter(kind=operation).count()
            if jobs != 1:
                trial.duplicates += jobs - 1
                trial.notes.append(f"{jobs} {operation} jobs for one submission")
        finally:
            for cluster in clusters:
                cluster.stop()
            s.close()

    return run_guarded(trial, body)


def kill_worker(trial, s, job, clusters, omerodir):
    """SIGKILL the target: the worker process running the job (its cluster starts another)
    or the whole cluster (then a new cluster is started)."""
    cluster = clusters[-1]
    pid = None
    if s.target == "worker" and job.state == "running" and job.worker:
        pid = int(job.worker.rsplit(":", 1)[1])
        if pid not in cluster.members():  # only a process this trial started
            pid = None
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        wait_dead([pid])
        return
    if s.target == "worker":
        trial.kill += " (job not yet on a worker: cluster)"
    cluster.kill()
    clusters.append(Cluster(omerodir, s.root / f"qcluster-{len(clusters)}.log"))
    clusters[-1].wait_ready()


# -- web trials -----------------------------------------------------------------------------

class Web(Group):
    """gunicorn on omeroweb.wsgi with the demo's settings, 2 sync workers."""

    def __init__(self, omerodir, port, log):
        self.port = port
        super().__init__([sys.executable, "-m", "gunicorn", "omeroweb.wsgi:application",
                          "--bind", f"127.0.0.1:{port}", "--workers", "2",
                          "--timeout", "60"],
                         service_env(omerodir, "testbed.demo_settings"), log)

    def workers(self):
        return [p for p in self.members() if p != self.pgid and _ppid(p) == self.pgid]

    def wait_up(self, client, bound=WEB_UP_BOUND):
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            try:
                if client.get("/demo/")[0] == 200 and len(self.workers()) >= 2:
                    return
            except NO_ANSWER:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"OMERO.web did not answer: {self.log_path.read_text()[-800:]}")


def wait_dead(pids, bound=10):
    """Until every pid is gone or a zombie (dead, not yet reaped by its parent)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                        alive.append(pid)
            except OSError:
                pass
        if not alive:
            return
        time.sleep(0.005)


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class Client:
    """A browser: session cookie, CSRF token from its cookie, JSON POSTs as the UI's
    scripts send them. Requests are logged as (start, path, status or error)."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.log = []
        self.lock = threading.Lock()

    def _open(self, request, timeout=30):
        started = time.monotonic()
        path = urllib.parse.urlsplit(request.full_url).path
        try:
            with self.opener.open(request, timeout=timeout) as response:
                out = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            out = e.code, e.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:  # refused, reset, cut short
            with self.lock:
                self.log.append((started, path, f"{type(e).__name__}"))
            raise
        with self.lock:
            self.log.append((started, path, out[0]))
        return out

    def get(self, path):
        return self._open(urllib.request.Request(self.base + path))

    def sign_in(self, user_id, landing="/storagemanager/"):
        """Sign in through the demo's page; the redirect to `landing` must answer 200
        (OMERO's guest lands on the sign-in page: the app refuses it everything)."""
        status, form = self.get("/demo/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "user_id": user_id,
                                       "url": landing}).encode()
        status, _ = self._open(urllib.request.Request(
            self.base + "/demo/", data=data, headers={"Referer": self.base + "/demo/"}))
        if status != 200:
            raise RuntimeError(f"sign-in answered {status}")

    def post_json(self, path, body):
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        return self._open(urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "X-CSRFToken": token,
                     "Referer": self.base + "/storagemanager/"}))


def browse(client, stop):
    """Pages fetched continually while the action is posted, killed and retried."""
    i = 0
    while not stop.is_set():
        try:
            client.get(PAGES[i % len(PAGES)])
        except NO_ANSWER:
            time.sleep(0.05)
        i += 1


def run_web_trial(server, index, operation, kill, seed, workdir, setup=Setup):
    trial = Trial(index, operation, "", kind="web")

    def body():
        from omero_storagemanager.models import Job
        from testbed.pg import free_port

        s = setup(server, trial, kill, seed, workdir)
        webs, clusters, stop = [], [], threading.Event()
        browser = None
        try:
            omerodir = services_omerodir(s, web=True)
            install_monitor()
            port = free_port()
            clusters.append(Cluster(omerodir, s.root / "qcluster.log", "testbed.demo_settings"))
            webs.append(Web(omerodir, port, s.root / "gunicorn-0.log"))
            client = Client(port)
            clusters[0].wait_ready()
            webs[0].wait_up(client)
            admin = next(int(uid) for uid, u in s.world.truth.users.items() if 0 in u["groups"])
            client.sign_in(admin)
            browser = threading.Thread(target=browse, args=(client, stop), daemon=True)
            browser.start()

            answers, first = [], {}

            def post():
                try:
                    first["answer"] = client.post_json(
                        "/storagemanager/api/v1/actions/",
                        {"action": operation, "collections": [s.key]})
                except NO_ANSWER as e:
                    first["error"] = type(e).__name__

            poster = threading.Thread(target=post)
            t0 = time.monotonic()
            poster.start()
            if s.how == "delay":
                time.sleep(max(0.0, s.value - (time.monotonic() - t0)))
            else:  # the instant the action's job is committed, its answer not yet read
                while poster.is_alive() and time.monotonic() - t0 < 30 \
                        and not Job.objects.filter(kind=operation).exists():
                    time.sleep(0.001)
            web = webs[-1]
            if s.target == "workers":
                pids = web.workers()
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                wait_dead(pids)
            elif s.target == "master":
                os.kill(web.pgid, signal.SIGKILL)  # the master only; its workers notice
                web.proc.wait(10)
            else:
                web.kill()  # master and workers
            poster.join(60)
            if s.target != "workers":  # nothing restarts it: start OMERO.web again
                webs.append(Web(omerodir, port, s.root / f"gunicorn-{len(webs)}.log"))
            webs[-1].wait_up(client)
            up_at = time.monotonic()
            if "answer" in first:
                answers.append(first["answer"])
            else:
                trial.killed = True
                answers.append((first.get("error", "no answer"), ""))
            # Retry what got no answer (or a server error), as a user would.
            for _ in range(5):
                status = answers[-1][0]
                if isinstance(status, int) and status < 500:
                    break
                try:
                    answers.append(client.post_json(
                        "/storagemanager/api/v1/actions/",
                        {"action": operation, "collections": [s.key]}))
                except NO_ANSWER as e:
                    answers.append((type(e).__name__, ""))
                    time.sleep(1)
            trial.answer = " -> ".join(str(a[0]) for a in answers)
            final, text = answers[-1]
            if final == 409 and "already has" not in text:
                trial.notes.append(f"retry refused without naming the job: {text[:200]}")
            elif final not in (202, 409):
                trial.stuck += 1
                trial.notes.append(f"the action never got an answer: {trial.answer} {text[:200]}")
            jobs = list(Job.objects.filter(kind=operation).order_by("pk"))
            if len(jobs) > 1:
                trial.duplicates += len(jobs) - 1
                trial.notes.append(f"{len(jobs)} {operation} jobs for one action: "
                                   + ", ".join(f"{j.pk} {j.state}" for j in jobs))
            for page in PAGES:  # every page answers once OMERO.web is back
                try:
                    client.get(page)
                except NO_ANSWER as e:
                    trial.notes.append(f"{page}: {type(e).__name__} after the restart")
            if not jobs:
                trial.stuck += 1
                trial.notes.append("no job was made for the action")
            else:
                completed = 1
                for job in jobs:
                    completed &= judge_job(trial, job, JOB_BOUND)
                    trial.attempts = max(trial.attempts, job.attempts)
                    status, text = client.get(f"/storagemanager/api/v1/jobs/{job.pk}/")
                    if status == 200 and json.loads(text).get("state") != job.state:
                        trial.notes.append(f"the API says job {job.pk} is "
                                           f"{json.loads(text).get('state')}, not {job.state}")
                check_end(trial, s, completed)
            stop.set()
            browser.join(30)
            with client.lock:
                log = list(client.log)
            errors = [(round(t - up_at, 2), p, st) for t, p, st in log
                      if isinstance(st, int) and st >= 500]
            after = [e for e in errors if e[0] >= 0]
            trial.http5xx += len(after)
            if errors:
                trial.notes.append(f"5xx answers (seconds after OMERO.web was back): "
                                   f"{errors[:5]}")
        finally:
            stop.set()
            if browser is not None:
                browser.join(30)
            for web in webs:
                web.stop()
            for cluster in clusters:
                cluster.stop()
            s.close()

    return run_guarded(trial, body)
