"""E-mail notifications (manual 6.7), through OMERO's own mail settings.

Kinds, each switchable with omero.web.storagemanager.notify: question (a disk to
connect, a tape to restore), error, warning, info (archived, purged, restored; to the
admins and to the collection's owner), quota. A failure to send is logged, never
raised: a job's outcome does not depend on the mail server.
"""
import logging

from django.core.mail import EmailMessage, get_connection

from .. import preferences, settings
from ..engine.capacity import CACHE_TYPES

logger = logging.getLogger(__name__)
SUBJECT_PREFIX = "[OMERO storage] "


def admin_recipients():
    chosen = preferences.get("admin_emails")
    if chosen:
        return list(chosen)
    from django.conf import settings as django_settings

    return [address for _, address in getattr(django_settings, "ADMINS", [])]


def emails_of(user_ids):
    """E-mail addresses of OMERO users, from the OMERO database ([] when unreachable)."""
    if not user_ids:
        return []
    from .. import catalog
    from ..catalog import people as catalog_people

    try:
        conn = catalog.connect()
    except catalog.CatalogUnavailable:
        return []
    try:
        return catalog_people.emails(conn, user_ids)
    finally:
        conn.close()


def owner_emails(collections):
    """E-mail addresses of the collections' owners (before any purge move), from OMERO."""
    return emails_of({c.original_owner_id or c.owner_id for c in collections})


def send(kind, subject, body, extra_recipients=()):
    """Send one notification of `kind` if enabled; returns True when sent."""
    if kind not in preferences.get("notify"):
        return False
    recipients = sorted(set(admin_recipients()) | set(extra_recipients))
    if not recipients:
        logger.warning("no recipients for %s e-mail %r: set "
                       "omero.web.storagemanager.admin_emails", kind, subject)
        return False
    params, sender = settings.mail_settings()
    if not params["host"]:
        logger.warning("no mail server: set omero.mail.host to send %s e-mails", kind)
        return False
    try:
        EmailMessage(SUBJECT_PREFIX + subject, body, sender, recipients,
                     connection=get_connection(timeout=30, **params)).send()
        return True
    except Exception as exc:  # the mail server must not decide a job's fate
        logger.error("could not send %s e-mail %r to %s: %s", kind, subject, recipients, exc)
        return False


def _targets(job):
    return ", ".join(c.key for c in job.collections.all()) or (
        job.location.name if job.location else "all")


def job_done(job, summary):
    if job.kind in ("archive", "purge", "restore"):
        collections = list(job.collections.all())
        send("info", f"{job.kind} done: {_targets(job)}",
             f"The {job.kind} job {job.pk} finished.\n\n{_describe(summary)}\n",
             owner_emails(collections))


def job_failed(job, error):
    send("error", f"{job.kind} failed: {_targets(job)}",
         f"Job {job.pk} ({job.kind} of {_targets(job)}) failed:\n\n{error}\n\n"
         f"The job log is in {job.log_dir}. Retry it from the Storage tab or with "
         f"`storagemanager jobs retry {job.pk}`.\n")


def job_waiting(job, reason):
    send("question", f"{job.kind} of {_targets(job)} is waiting",
         f"Job {job.pk} ({job.kind} of {_targets(job)}) is waiting:\n\n{reason}\n\n"
         "It goes on by itself once this is done. You get a reminder every "
         f"{_duration(settings.WAIT_REMINDER)} while it waits.\n")


def job_still_waiting(job, now):
    """A reminder: the wait started at job.wait_since and still lasts."""
    waited = _duration((now - job.wait_since).total_seconds()) if job.wait_since else "a while"
    send("question", f"reminder: {job.kind} of {_targets(job)} still waiting",
         f"Job {job.pk} ({job.kind} of {_targets(job)}) has been waiting for {waited} "
         f"(since {job.wait_since:%Y-%m-%d %H:%M} UTC):\n\n{job.wait_reason}\n\n"
         "It goes on by itself once this is done, or cancel it from the Storage tab.\n")


def wait_over(job, waited):
    """A wait that asked a person ended with the job done (a disk may go back now)."""
    send("info", f"{job.kind} of {_targets(job)} no longer waiting",
         f"Job {job.pk} ({job.kind} of {_targets(job)}) waited "
         f"{_duration(waited['seconds'])} (since {waited['since'][:16].replace('T', ' ')} UTC) "
         "and is done now: what it waited for is no longer needed.\n")


def _duration(seconds):
    seconds = int(seconds)
    if seconds >= 86400:
        days, rest = divmod(seconds, 86400)
        return f"{days} day{'s' * (days != 1)}" + (f" {rest // 3600} h" if rest >= 3600 else "")
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min {seconds % 60} s"


def audit_failed(job, report):
    send("warning", f"audit found {len(report.failed)} damaged copies",
         "Copies that failed their audit (they are no longer relied on):\n\n"
         + "\n".join(report.failed) + "\n\n" + "\n".join(report.problems[:50]) + "\n")


def copies_missing(job, report):
    """A rescan found copies gone: a warning, or an error when a purged collection lost
    its last copy (nothing can restore it now)."""
    where = job.location.name if job.location else "a location"
    lines = "\n".join(report.missing[:200])
    if report.orphaned:
        send("error", f"{len(report.orphaned)} purged collection(s) lost their last copy",
             f"A rescan of {where} did not find {len(report.missing)} copies. These purged "
             "collections have no copy left anywhere, so they cannot be restored:\n\n"
             + "\n".join(report.orphaned) + "\n\nPut the disk or the bags back and rescan "
             f"{where}.\n\nCopies not found:\n{lines}\n")
    else:
        send("warning", f"{len(report.missing)} copies missing from {where}",
             f"A rescan of {where} did not find these copies (marked missing; other copies "
             f"of their collections remain):\n\n{lines}\n")


def location_full(location, keys):
    """The automatic archive left collections out for want of room (once a night)."""
    send("warning", f"{location.name} is full: {len(keys)} collection(s) not archived",
         f"The current archive location {location.name!r} (id {location.pk}) cannot take "
         f"these collections without exceeding its maximum size ({location.max_bytes} "
         "bytes), so the automatic archive did not start them:\n\n" + "\n".join(keys)
         + "\n\nAdd a location (connect a new disk) and make it current"
         + (", or purge its read cache" if location.type in CACHE_TYPES else "")
         + "; they are archived the next night.\n")


def quota_exceeded(entries):
    lines = [f"{e['scope']} {e['name']} (id {e['id']}): {e['online_bytes']} bytes online, "
             f"quota {e['quota_bytes']}" for e in entries]
    send("quota", f"{len(entries)} over quota", "Over quota:\n\n" + "\n".join(lines) + "\n")


def test_email():
    """The admin page's "send test e-mail": sends whatever the switches say."""
    params, sender = settings.mail_settings()
    recipients = admin_recipients()
    if not recipients:
        raise ValueError("no recipients: set omero.web.storagemanager.admin_emails")
    if not params["host"]:
        raise ValueError("no mail server: set omero.mail.host (and omero.mail.port)")
    EmailMessage(SUBJECT_PREFIX + "test e-mail",
                 "This is a test e-mail from the OMERO storage manager.\n", sender, recipients,
                 connection=get_connection(timeout=30, **params)).send()
    return recipients


def _describe(summary):
    lines = []
    for item in summary.get("collections", []):
        lines.append(", ".join(f"{k}: {v}" for k, v in item.items()))
    return "\n".join(lines) or str(summary)


def mail_configured(kind="info"):
    """True when e-mails of `kind` would be sent (a mail server set and the kind on):
    the pages promise an e-mail only then."""
    return bool(settings.mail_settings()[0]["host"]) and kind in preferences.get("notify")
