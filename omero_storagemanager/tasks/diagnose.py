"""The support bundle (manual 9: "dump thread information", "save full dump"; issue 20).

One .tar.gz, readable by the service user only, holding: versions.json (the app,
Python, Django, django-q2, omero-py, omero-web, PostgreSQL), settings.json (every
omero.web.storagemanager.* setting and the Django settings that matter, secrets
replaced by "***"), jobs.json (counts, active jobs, recent failures), workers.json
(django-q2 clusters), threads/<pid>.txt (a thread dump of each worker on this host) and
logs/ (the tail of recent job logs and of OMERO.web's logs). Before anything is
written, every text is scrubbed of every secret value the configuration holds, so a
password that found its way into a log line does not leave with the bundle.
"""
import io
import json
import os
import platform
import re
import sys
import tarfile
from collections import Counter
from datetime import datetime, timezone

from .. import settings

SECRET_KEYS = re.compile(r"pass|secret|token|credential|access_key|private", re.I)
URL_CREDENTIALS = re.compile(r"(\w+://)([^/@\s:]*):([^/@\s]*)@")
LOG_LINES = 200
RECENT_JOBS = 10
HIDDEN = "***"


def redact(value, key=""):
    """`value` with every secret-looking entry replaced (dicts walked by key name)."""
    if key and SECRET_KEYS.search(key) and value not in ("", None, [], {}):
        return HIDDEN
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{m.group(2)}:{HIDDEN}@", value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)


def secret_values():
    """Every secret the configuration holds, to scrub from whatever the bundle carries."""
    from django.conf import settings as django_settings

    found = set()

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key and SECRET_KEYS.search(key) and len(value) >= 4:
            found.add(value)

    walk({name: getattr(settings, name, None) for name in _app_setting_names()})
    walk({"SECRET_KEY": django_settings.SECRET_KEY,
          "DATABASES": django_settings.DATABASES,
          "EMAIL_HOST_PASSWORD": getattr(django_settings, "EMAIL_HOST_PASSWORD", ""),
          "Q_CLUSTER": getattr(django_settings, "Q_CLUSTER", {}),
          "omero.db.pass": settings.omero_setting("omero.db.pass", "")})
    return sorted(found, key=len, reverse=True)


def _app_setting_names():
    return [entry[0] for entry in settings.CUSTOM_SETTINGS_MAPPINGS.values()]


def versions():
    from django.db import connection

    def version_of(module):
        try:
            imported = __import__(module)
        except Exception as exc:  # a missing optional part is reported, not fatal
            return f"not importable: {type(exc).__name__}"
        return getattr(imported, "__version__", None) or getattr(imported, "VERSION", "?")

    from ..version import __version__

    found = {"omero-storagemanager": __version__, "python": sys.version,
             "platform": platform.platform(), "django": version_of("django"),
             "django_q": version_of("django_q"), "omero_version": version_of("omero_version"),
             "omeroweb": version_of("omeroweb"), "psycopg2": version_of("psycopg2")}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT version()")
            found["app_database"] = cur.fetchone()[0]
    except Exception as exc:
        found["app_database"] = f"unreachable: {type(exc).__name__}"
    return redact(found)


def settings_report():
    from django.conf import settings as django_settings

    app = {key: getattr(settings, entry[0], None)
           for key, entry in settings.CUSTOM_SETTINGS_MAPPINGS.items()}
    django_part = {name: getattr(django_settings, name, None) for name in (
        "DATABASES", "CACHES", "Q_CLUSTER", "INSTALLED_APPS", "EMAIL_HOST", "EMAIL_PORT",
        "EMAIL_HOST_USER", "EMAIL_USE_TLS", "SERVER_EMAIL", "TIME_ZONE", "DEBUG")}
    from .. import preferences

    return redact({"storagemanager": app, "preferences": preferences.get_all(),
                   "django": django_part})


def jobs_report():
    from ..models import Job

    def row(job):
        return {"id": job.pk, "kind": job.kind, "state": job.state, "attempts": job.attempts,
                "worker": job.worker, "heartbeat": job.heartbeat, "created": job.created,
                "started": job.started, "finished": job.finished,
                "wait_kind": job.wait_kind, "wait_since": job.wait_since,
                "wait_reason": job.wait_reason, "error": job.error[:2000]}

    counts = Counter(f"{kind} {state}" for kind, state in
                     Job.objects.values_list("kind", "state"))
    return {"counts": dict(sorted(counts.items())),
            "active": [row(j) for j in Job.objects.filter(state__in=Job.ACTIVE).order_by("pk")],
            "recent_failures": [row(j) for j in Job.objects.filter(state=Job.FAILED)
                                .order_by("-pk")[:20]]}


def workers_report():
    from ..views.status import workers_status

    report = {"status": workers_status(), "clusters": []}
    try:
        from django_q.status import Stat

        for stat in Stat.get_all():
            report["clusters"].append({"cluster": str(stat.cluster_id), "host": stat.host,
                                       "pid": stat.pid, "status": str(stat.status),
                                       "workers": list(stat.workers),
                                       "uptime": stat.uptime()})
    except Exception as exc:  # no shared cache: the status above says so
        report["clusters_error"] = f"{type(exc).__name__}: {exc}"
    return report


def _tail(path, lines=LOG_LINES):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(unreadable: {exc.strerror})\n"
    return "\n".join(text.splitlines()[-lines:]) + "\n"


def log_tails():
    from ..models import Job

    found = {}
    for job in Job.objects.exclude(log_dir="").order_by("-pk")[:RECENT_JOBS]:
        for name in ("job.log", "errors.txt"):
            path = os.path.join(job.log_dir, name)
            if os.path.isfile(path):
                found[f"logs/job-{job.pk}-{name}"] = _tail(path)
    web_logs = os.path.join(os.environ.get("OMERODIR", ""), "var", "log")
    if os.path.isdir(web_logs):
        for name in sorted(os.listdir(web_logs)):
            if name.endswith(".log"):
                found[f"logs/web-{name}"] = _tail(os.path.join(web_logs, name))
    return found


def build(target=None, dump_threads=True):
    """Write the bundle; returns its path."""
    from .threaddump import collect

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if target is None:
        folder = os.path.join(settings.var_dir(), "support")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        target = os.path.join(folder, f"diagnose-{stamp}.tar.gz")
    parts = {"versions.json": versions(), "settings.json": settings_report(),
             "jobs.json": jobs_report(), "workers.json": workers_report()}
    texts = {name: json.dumps(value, indent=1, default=str, ensure_ascii=False) + "\n"
             for name, value in parts.items()}
    if dump_threads:
        for pid, dump in collect().items():
            texts[f"threads/{pid}.txt"] = dump
    texts.update(log_tails())
    secrets = secret_values()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as bundle:
        for name, text in sorted(texts.items()):
            for secret in secrets:
                text = text.replace(secret, HIDDEN)
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"diagnose-{stamp}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.now().timestamp())
            bundle.addfile(info, io.BytesIO(data))
    return target
