"""The facility of the manual's worked examples (chapters 13-15) as a story's stage.

A story only does what an admin or a user does (the API as each of them, the command
line, folders renamed for disks mounted and unmounted) and moves a test-driven clock.
Everything else happens the way it happens in production:

- the clock (time-machine) moves the whole process's time: Django's, the app's and
  django-q2's alike;
- `pass_until(when)` steps the clock from schedule to schedule. At each step django-q2's
  own scheduler (django_q.scheduler.scheduler) turns the Schedule rows that are due into
  tasks on the ORM broker, exactly as a cluster's scheduler does (catch_up off: a
  schedule passed several times in one step runs once), and `work()` plays the cluster's
  workers: it takes each task from the broker and runs its function (the app's
  run_scheduled, run_job, monitor...) until the queue is empty;
- e-mail goes to a real SMTP server (tests/test_jobs.py Mailbox);
- the API is called as each user through the full middleware stack with CSRF
  (tests/api_support.py).

Workers are not in other processes here: a cluster's processes would not share the
moved clock. Jobs are therefore run one after another, which is what a one-worker
cluster does.
"""
import importlib
import pydoc
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import time_machine
from django.apps import apps as django_apps
from django.db import connection
from django.test import override_settings

from omero_storagemanager.models import Job
from tests.api_support import Api, data, omero_sql, user_ids

API = "/storagemanager/api/v1/"
LONDON = ZoneInfo("Europe/London")  # omeroweb's default omero.web.time_zone
# Installed by these migrations; a test before may have emptied django-q2's tables.
MIGRATION_SCHEDULES = ("0004_monitor_schedule", "0011_request_lifecycle_usage",
                       "0013_catalog_cursor")


def local(year, month, day, hour=0, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


class TaskFailed(AssertionError):
    """A task raised in a worker: never part of a story."""


class Stage:
    """The facility, its clock, its workers, its mailbox and its people."""

    def __init__(self, facility, tmp_path, mailbox, start, step=timedelta(hours=6)):
        self.facility, self.tmp_path, self.mailbox = facility, Path(tmp_path), mailbox
        self.step = step  # longest jump between two looks of the minute schedules
        self.users = user_ids(facility)
        self.admin_id = self.users["ingrid"]
        self.travel = time_machine.travel(start, tick=True)
        self.tasks_run = []
        self.overhead = {}  # seconds spent by the stage itself (scheduler, broker)
        self._changes = None

    # -- set-up and tear-down -------------------------------------------------------------
    def __enter__(self):
        from django_q.models import OrmQ, Schedule

        self.clock = self.travel.start()
        OrmQ.objects.all().delete()
        Schedule.objects.all().delete()
        for name in MIGRATION_SCHEDULES:
            module = importlib.import_module(f"omero_storagemanager.migrations.{name}")
            module.install(django_apps, None)
        # OMERO.web's file sessions expire by the file's mtime, which the moved clock does
        # not move: the database's sessions (omero.web.session_engine allows them) do.
        self._mail = override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=self.mailbox.port,
                                       SERVER_EMAIL="omero@example.org",
                                       SESSION_ENGINE="django.contrib.sessions.backends.db")
        self._mail.enable()
        # Persistent connections, as the README's installation configures them
        # (CONN_MAX_AGE): else django-q2's broker opens a new one at each of its calls.
        # None rather than the README's seconds: the moved clock must not age them.
        self._db_settings = dict(connection.settings_dict)
        connection.close()
        connection.settings_dict.update(CONN_MAX_AGE=None)
        return self

    def __exit__(self, *exc):
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(self._db_settings)
        self._mail.disable()
        self.travel.stop()
        if self._changes is not None:
            self._changes.conn.close()

    # -- the clock --------------------------------------------------------------------------
    @staticmethod
    def now():
        from django.utils import timezone

        return timezone.localtime(timezone.now(), LONDON)

    def move_to(self, when):
        assert when >= self.now() - timedelta(seconds=1), (when, self.now())
        self.clock.move_to(when)

    def pass_until(self, when):
        """Let time pass until `when`: each schedule fires when its time comes (the
        minute ones at least every self.step), and the workers run what it queued."""
        from django_q.models import Schedule

        while True:
            daily = (Schedule.objects.filter(schedule_type=Schedule.DAILY,
                                             next_run__gt=self.now())
                     .order_by("next_run").values_list("next_run", flat=True).first())
            target = min(filter(None, (daily, self.now() + self.step)))
            if target > when:
                break
            self.move_to(target + timedelta(seconds=1))
            self.tick()
        self.move_to(when)
        self.tick()

    def pass_days(self, days, at=(9, 0)):
        """Let `days` nights pass, ending on that many days later at `at` (local)."""
        day = self.now().date() + timedelta(days=days)
        self.pass_until(datetime(day.year, day.month, day.day, *at, tzinfo=LONDON))

    # -- the cluster ------------------------------------------------------------------------
    def tick(self):
        """The cluster's scheduler looks at its schedules once, then the workers work."""
        from django_q.brokers import get_broker
        from django_q.scheduler import scheduler

        began = time.monotonic()
        scheduler(get_broker())
        self.overhead["scheduler"] = self.overhead.get("scheduler", 0) + time.monotonic() - began
        self.work()

    def work(self, limit=10_000):
        """What the cluster's workers do: take each task from the broker and run it, until
        the queue is empty. A task that raises fails the story (with its traceback)."""
        from django_q.brokers import get_broker
        from django_q.signing import SignedPackage

        broker = get_broker()
        for _ in range(limit):
            began = time.monotonic()
            # An empty ORM broker makes dequeue() sleep a poll interval (a cluster idles
            # there): ask first, the queue's size costs one query.
            batch = broker.dequeue() if broker.queue_size() else None
            self.overhead["broker"] = self.overhead.get("broker", 0) + time.monotonic() - began
            if not batch:
                return
            for ack, payload in batch:
                task = SignedPackage.loads(payload)
                func = task["func"] if callable(task["func"]) else pydoc.locate(task["func"])
                began = time.monotonic()
                try:
                    result = func(*task["args"], **task["kwargs"])
                except Exception as exc:
                    raise TaskFailed(f"task {task['func']}{task['args']} raised {exc!r} "
                                     f"at {self.now():%Y-%m-%d %H:%M}") from exc
                finally:
                    broker.acknowledge(ack)
                self.tasks_run.append((self.now(), task["func"], task["args"], result,
                                       time.monotonic() - began))
        raise AssertionError(f"the workers never ran out of tasks ({limit} runs)")

    def time_spent(self):
        """Seconds the workers spent per task function (run_job per job kind): where a
        story's time goes."""
        kinds = dict(Job.objects.values_list("pk", "kind"))
        spent = {}
        for _, func, args, _, seconds in self.tasks_run:
            name = func.rpartition(".")[2]
            if name == "run_job":
                name = f"run_job:{kinds.get(args[0], '?')}"
            spent[name] = spent.get(name, 0) + seconds
        return {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}

    # -- people -----------------------------------------------------------------------------
    def api(self, omename):
        """The API as this OMERO user, freshly signed in (create inside
        tests.api_support.standin_middleware)."""
        return Api(self.users[omename])

    def admin(self):
        return Api(self.admin_id)

    def mails(self, text=""):
        """E-mails received so far (recipients, text) that contain `text`."""
        return [m for m in self.mailbox.messages if text in m[1]]

    def wait_for_mail(self, text, timeout=10):
        """The SMTP server hands messages over in its own thread: wait for this one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.mails(text)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no e-mail containing {text!r}; subjects: {self.subjects()}")

    def subjects(self):
        return [next((line for line in m[1].splitlines() if line.startswith("Subject:")), "")
                for m in self.mailbox.messages]

    # -- the facility's users at work -------------------------------------------------------
    def changes(self):
        if self._changes is None:
            from testbed.changes import FacilityChanges

            self._changes = FacilityChanges(psycopg2.connect(self.facility.dsn), seed=13)
        return self._changes

    def import_project(self, omename, n_files=2):
        """`omename` makes a Project and imports files into it now (OMERO's rows and the
        files in the managed repository). Returns its key, "Project:<id>"."""
        uid = self.users[omename]
        [(gid,)] = omero_sql(self.facility, "SELECT parent FROM groupexperimentermap WHERE "
                             "child = %s AND parent > 2 ORDER BY id LIMIT 1", [uid])
        pid = self.changes().import_new_project(uid, gid, self.facility.truth.managed_dir,
                                                self.now(), n_files)
        return f"Project:{pid}"

    def omero_user_and_group(self, omename, group):
        """What an OMERO admin makes with `omero group add` and `omero user add`: a
        user in a group of its own (the manual's archive user and group). Returns ids."""
        from testbed.generator import PERMISSIONS

        [(gid,)] = omero_sql(self.facility, "SELECT max(id) + 1 FROM experimentergroup")
        omero_sql(self.facility, "INSERT INTO experimentergroup (id, permissions, name, ldap,"
                                 " version) VALUES (%s, %s, %s, false, 0)",
                  [gid, PERMISSIONS["private"], group])
        [(uid,)] = omero_sql(self.facility, "SELECT max(id) + 1 FROM experimenter")
        omero_sql(self.facility, "INSERT INTO experimenter (id, permissions, firstname,"
                                 " lastname, omename, ldap, version) VALUES (%s, 0, 'Archive',"
                                 " 'Keeper', %s, false, 0)", [uid, omename])
        [(mid,)] = omero_sql(self.facility, "SELECT coalesce(max(id), 0) + 1 FROM "
                                            "groupexperimentermap")
        for index, parent in enumerate((gid, 1)):  # its group, and OMERO's "user" group
            omero_sql(self.facility, "INSERT INTO groupexperimentermap (id, permissions, owner,"
                                     " version, child, parent, child_index) VALUES"
                                     " (%s, -52, false, 0, %s, %s, %s)",
                      [mid + index, uid, parent, index])
        self.users[omename] = uid
        return uid, gid

    # -- what the admin reads ---------------------------------------------------------------
    def jobs(self, **filters):
        return list(Job.objects.filter(**filters).order_by("pk"))

    def failed_jobs(self):
        return [(j.pk, j.kind, j.error) for j in Job.objects.filter(state=Job.FAILED)]


def ok(response, status=200):
    assert response.status_code == status, (response.status_code, response.content[:2000])
    return data(response)


def sha1_of(path):
    import hashlib

    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def chapter_stage(facility, tmp_path, monkeypatch, mailbox, stage_class=Stage, **kwargs):
    """The stage of a chapter's story: the app pointed at the facility, ten backups kept
    (`omero config set omero.web.storagemanager.backups_kept 10`, the chapters' "amount
    of backups to keep online"; the rest is set on the admin pages by the story), the
    clock at a Monday morning, OMERO.web's stand-in middleware."""
    from omero_storagemanager import settings
    from tests.api_support import point_app_at, standin_middleware

    point_app_at(facility, monkeypatch, tmp_path)
    monkeypatch.setattr(settings, "BACKUPS_KEPT", 10)
    with stage_class(facility, tmp_path, mailbox, start=local(2027, 1, 4, 9, 0),
                     **kwargs) as running, standin_middleware():
        yield running


@contextmanager
def quiet_stretch(stage, days, story_started):
    """The rest of a story's year: nothing inside may fail a job or send an e-mail; says
    where the time went (the year's two-minute goal)."""
    failed, mails = len(stage.failed_jobs()), len(stage.mailbox.messages)
    began, before = time.monotonic(), stage.time_spent()
    yield
    took = time.monotonic() - began
    spent = {k: round(v - before.get(k, 0), 2) for k, v in stage.time_spent().items()}
    print(f"rest: {days} days in {took:.1f} s; workers: {spent}; "
          f"story {time.monotonic() - story_started:.1f} s; stage {stage.overhead}")
    assert len(stage.failed_jobs()) == failed, stage.failed_jobs()
    assert stage.subjects()[mails:] == []


def backups_listed():
    """The backups `storagemanager backup list` names: current, 0, 1, ..."""
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("storagemanager", "backup", "list", stdout=out)
    return [line.split()[0] for line in out.getvalue().splitlines() if line.strip()]


def night_one_bytes(facility):
    """What the first night archives: every collection whose files are all there as
    OMERO records them (the test bed's truth)."""
    return sum(sum(f["size"] for f in c["files"])
               for c in facility.truth.collections.values()
               if c["files"] and not any(f["missing"] or "db_size" in f for f in c["files"]))


__all__ = ["API", "LONDON", "Stage", "TaskFailed", "backups_listed", "chapter_stage",
           "local", "night_one_bytes", "ok", "quiet_stretch", "sha1_of"]
