"""Every setting of the app, read from `omero config` as `omero.web.storagemanager.*`.

OMERO.web imports `<app>.settings` for each app in `omero.web.apps` and runs
`process_custom_settings` on it, which sets the module attributes named below from
`$OMERODIR/etc/grid/config.xml` (or the defaults). This is the only module that reads
configuration; everything else imports the resolved values from here.

Set them as an OMERO admin would:

    omero config set omero.web.storagemanager.data_dir /OMERO
    omero config set omero.web.storagemanager.omero_db '{"host": "db", "name": "omero"}'

This module is imported while Django's settings are being built: it must not import
Django models or anything that needs the app registry.
"""
import json
import os
import sys

from omeroweb.settings import CUSTOM_SETTINGS, process_custom_settings

PREFIX = "omero.web.storagemanager."


def parse_boolean(value):
    """true/false (also 1/0, yes/no, on/off). Stricter than omeroweb's parse_boolean,
    which reads any typo as false: a typo here must stop start-up, not flip a switch."""
    text = str(value).strip().lower()
    if text in ("true", "1", "t", "yes", "y", "on"):
        return True
    if text in ("false", "0", "f", "no", "n", "off"):
        return False
    raise ValueError("must be true or false")


class SecretSettingError(Exception):
    """A malformed setting that may hold a password. Not a ValueError on purpose:
    omeroweb's process_custom_settings turns a ValueError into a message quoting the
    whole value (the password with it); this one goes out as it is, naming the key."""


def parse_db(value):
    """The OMERO database: a JSON object of libpq keywords, or "" for omero.db.*.

    Accepted keys: host, port, name (or dbname), user, password (or pass), and any
    other libpq keyword such as sslmode. Unknown non-string values are refused. A
    malformed value is refused without being shown: it may hold the password.
    """
    if value in ("", None):
        return {}
    key = PREFIX + "omero_db"
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError as exc:
        raise SecretSettingError(f"{key} is not valid JSON ({exc}); the value is not "
                                 "shown, as it may hold a password") from None
    if not isinstance(parsed, dict):
        raise SecretSettingError(f"{key} must be a JSON object such as "
                                 '{"host": "db", "name": "omero"}')
    for name, item in parsed.items():
        if not isinstance(item, (str, int)):
            raise SecretSettingError(f"{key}: the value of {name!r} must be a string or a "
                                     "number")
    return parsed


def parse_path(value):
    """An absolute directory path, or "" to fall back to OMERO's own setting."""
    value = (value or "").strip()
    if value and not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    return os.path.normpath(value) if value else ""


def parse_concurrency(value):
    """{"kind": n, ...}: how many jobs of a kind may run at once."""
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(n, int) and n >= 1 for k, n in parsed.items()):
        raise ValueError('must be a JSON object of job kinds to numbers >= 1, e.g. {"scan": 2}')
    return parsed


NOTIFY_KINDS = ("question", "error", "warning", "info", "quota")


def parse_notify(value):
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, list) or not set(parsed) <= set(NOTIFY_KINDS):
        raise ValueError("must be a JSON list drawn from " + ", ".join(NOTIFY_KINDS))
    return parsed


def parse_emails(value):
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, list) or not all(isinstance(e, str) and "@" in e for e in parsed):
        raise ValueError('must be a JSON list of e-mail addresses, e.g. ["storage@example.org"]')
    return parsed


def parse_id_list(value):
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, list) or not all(isinstance(i, int) and i >= 0 for i in parsed):
        raise ValueError("must be a JSON list of OMERO ids, e.g. [3, 5]")
    return parsed


def parse_optional_id(value):
    """An OMERO id, or "" for none."""
    text = str(value).strip()
    if not text:
        return None
    number = int(text)
    if number < 0:
        raise ValueError("must be an OMERO id (0 or more) or empty")
    return number


MIN_WAIT_REMINDER = 3600


def parse_reminder_interval(value):
    """Seconds between reminders: at least an hour, so a waiting job cannot flood inboxes."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("must be a whole number of seconds") from None
    if number < MIN_WAIT_REMINDER:
        raise ValueError(f"must be at least {MIN_WAIT_REMINDER} seconds (one hour)")
    return number


def parse_non_negative_int(value):
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("must be a whole number, 0 or more") from None
    if number < 0:
        raise ValueError("must be a whole number, 0 or more")
    return number


def parse_positive_int(value):
    number = int(value)
    if number < 1:
        raise ValueError("must be 1 or more")
    return number


def parse_s3_credentials(value):
    """{name: {"access_key_id", "secret_access_key"[, "session_token"]}}; an error names
    the key and never repeats the value (it holds secrets)."""
    try:
        return _s3_credentials(value)
    except ValueError as exc:
        raise SecretSettingError(f"Invalid {PREFIX}s3_credentials: {exc} (the value is not "
                                 "shown: it holds secrets)") from None


def _s3_credentials(value):
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise ValueError("must be a JSON object") from None
    keys = {"access_key_id", "secret_access_key", "session_token"}
    if not isinstance(parsed, dict) or not all(
            isinstance(name, str) and isinstance(item, dict)
            and {"access_key_id", "secret_access_key"} <= set(item) <= keys
            and all(isinstance(v, str) and v for v in item.values())
            for name, item in parsed.items()):
        raise ValueError('must be {"NAME": {"access_key_id": ..., "secret_access_key": ...}}')
    return parsed


# key: [module attribute, default (as written in config.xml), parser, description]
CUSTOM_SETTINGS_MAPPINGS = {
    PREFIX + "omero_db": [
        "OMERO_DB",
        "",
        parse_db,
        "Connection to the OMERO database, read only (a read-only role is "
        "recommended): a JSON object with host, port, name, user, password and other "
        "libpq keywords. Empty: use the server's omero.db.* settings when OMERO.web "
        "shares the server's configuration.",
    ],
    PREFIX + "data_dir": [
        "DATA_DIR",
        "",
        parse_path,
        "OMERO's binary repository (omero.data.dir). Empty: omero.data.dir, else /OMERO.",
    ],
    PREFIX + "managed_dir": [
        "MANAGED_DIR",
        "",
        parse_path,
        "The managed repository of FS imports (omero.managed.dir). Empty: "
        "omero.managed.dir, else <data_dir>/ManagedRepository.",
    ],
    PREFIX + "var_dir": [
        "VAR_DIR",
        "",
        parse_path,
        "Where the app keeps job logs and database backups. Empty: "
        "$OMERODIR/var/storagemanager.",
    ],
    PREFIX + "include_attachments": [
        "INCLUDE_ATTACHMENTS",
        "true",
        parse_boolean,
        "Count file attachments on a Project or Screen and its children as part of it.",
    ],
    PREFIX + "catalog_refresh_minutes": [
        "CATALOG_REFRESH_MINUTES",
        "5",
        parse_positive_int,
        "Minutes between two refreshes of the catalogue from OMERO's eventlog (the "
        "incremental catalogue; a full scan where eventlog cannot tell what changed). "
        "Read when the app's migrations install the schedule.",
    ],
    PREFIX + "copies_required": [
        "COPIES_REQUIRED",
        "1",
        parse_positive_int,
        "Verified copies a file needs before purge may delete its primary copy.",
    ],
    PREFIX + "purge_audit_max_age_days": [
        "PURGE_AUDIT_MAX_AGE_DAYS",
        "30",
        parse_positive_int,
        "A copy that purge cannot read now (a tape, a removable disk not connected) counts "
        "only if an audit found it whole within this many days; otherwise the purge keeps "
        "the file and says why.",
    ],
    PREFIX + "purge_sample_above": [
        "PURGE_SAMPLE_ABOVE",
        "0",
        parse_non_negative_int,
        "Purge reads every copy it relies on whole and compares its checksum. Files larger "
        "than this many bytes are instead compared with the primary file at 16 sampled "
        "places of 64 KiB (first and last included). 0: always whole files.",
    ],
    PREFIX + "purge_rename": [
        "PURGE_RENAME",
        "false",
        parse_boolean,
        "After a purge, prefix the Project or Screen name with \"(archived) \" (manual 6.4).",
    ],
    PREFIX + "archive_user_id": [
        "ARCHIVE_USER_ID",
        "",
        parse_optional_id,
        "After a purge, give the Project or Screen to this OMERO user (the original owner "
        "is remembered and restored). Empty: keep the owner.",
    ],
    PREFIX + "archive_group_id": [
        "ARCHIVE_GROUP_ID",
        "",
        parse_optional_id,
        "After a purge, move the Project or Screen to this OMERO group (remembered and "
        "restored). Empty: keep the group.",
    ],
    PREFIX + "copy_workers": [
        "COPY_WORKERS",
        "4",
        parse_positive_int,
        "Copy worker processes of an archive or restore, at most one per core (each copies "
        "a batch of files at a time, small files made durable together).",
    ],
    PREFIX + "gateway_factory": [
        "GATEWAY_FACTORY",
        "omero_storagemanager.gateway.blitz.service_gateway",
        str,
        "Dotted path of a function returning the Gateway that workers and the command "
        "line use to make OMERO changes (rename, owner, group, state annotation). The "
        "default logs in to OMERO.server with the service account below.",
    ],
    PREFIX + "service_user": [
        "SERVICE_USER",
        "",
        str,
        "OMERO admin account the workers use for OMERO changes (never shown in logs).",
    ],
    PREFIX + "service_password": [
        "SERVICE_PASSWORD",
        "",
        str,
        "Password of the service account (never shown in logs or pages).",
    ],
    PREFIX + "concurrency": [
        "CONCURRENCY",
        "{}",
        parse_concurrency,
        "Jobs of one kind that may run at once, e.g. {\"scan\": 2}. Default 1 per kind, as "
        "in the manual; a collection never has two jobs running at once.",
    ],
    PREFIX + "max_attempts": [
        "MAX_ATTEMPTS",
        "5",
        parse_positive_int,
        "Times a job is started (first run and resumptions after a worker died) before "
        "it is marked failed.",
    ],
    PREFIX + "heartbeat_timeout": [
        "HEARTBEAT_TIMEOUT",
        "120",
        parse_positive_int,
        "Seconds without a heartbeat after which a running job's worker is taken for dead "
        "and the job is resumed by another worker.",
    ],
    PREFIX + "wait_recheck": [
        "WAIT_RECHECK",
        "300",
        parse_positive_int,
        "Seconds between two looks at a waiting job (a disk to connect, a tape restore).",
    ],
    PREFIX + "stat_scan_period_days": [
        "STAT_SCAN_PERIOD_DAYS",
        "7",
        parse_positive_int,
        "Every collection gets a stat scan (files on disk, last access) at least once in this "
        "many days: each scheduled scan also stat-scans the slice whose figures are oldest.",
    ],
    PREFIX + "wait_reminder": [
        "WAIT_REMINDER",
        "86400",
        parse_reminder_interval,
        "Seconds between two reminder e-mails about a job still waiting for a person (a "
        "disk to connect, a tape to restore; default daily, at least 3600). The question "
        "e-mail goes out once when the wait starts; reminders never more often than this.",
    ],
    PREFIX + "notify": [
        "NOTIFY",
        '["question", "error", "warning", "info", "quota"]',
        parse_notify,
        "Which e-mails are sent (manual 6.7): question (connect a disk, restore a tape), "
        "error, warning, info (archived, purged, restored: to the admins and the owner), "
        "quota (a user or group over quota).",
    ],
    PREFIX + "admin_emails": [
        "ADMIN_EMAILS",
        "[]",
        parse_emails,
        "Who gets the storage manager's e-mails. Empty: omero.web.admins.",
    ],
    PREFIX + "auto_archive_users": [
        "AUTO_ARCHIVE_USERS",
        "[]",
        parse_id_list,
        "Automatic archive: only these OMERO user ids (JSON list); empty: all users.",
    ],
    PREFIX + "auto_archive_min_age_hours": [
        "AUTO_ARCHIVE_MIN_AGE_HOURS",
        "24",
        parse_positive_int,
        "Automatic archive: the newest file of a collection must be older than this.",
    ],
    PREFIX + "backups_kept": [
        "BACKUPS_KEPT",
        "10",
        parse_positive_int,
        "Database backups kept besides the current one (manual chapter 11).",
    ],
    PREFIX + "pg_bin_dir": [
        "PG_BIN_DIR",
        "",
        parse_path,
        "Directory of pg_dump and pg_restore for backups. Empty: found on PATH.",
    ],
    PREFIX + "demo": [
        "DEMO",
        "false",
        parse_boolean,
        "Set only by the demo settings module: labels every page as a demo.",
    ],
    PREFIX + "s3_credentials": [
        "S3_CREDENTIALS",
        "{}",
        parse_s3_credentials,
        "Secrets of S3 archive locations whose credentials are 'config:NAME': a JSON "
        "object {\"NAME\": {\"access_key_id\": \"...\", \"secret_access_key\": \"...\"}}. "
        "Never shown by the app; locations may instead use the standard AWS chain.",
    ],
}


process_custom_settings(sys.modules[__name__])


def omero_setting(key, default=""):
    """A server-side OMERO setting (omero.db.*, omero.data.dir) from the shared config."""
    return CUSTOM_SETTINGS.get(key, default)


def omero_db_params():
    """libpq keywords for the OMERO database: app setting first, then omero.db.*."""
    params = dict(OMERO_DB)  # noqa: F821 (set by process_custom_settings)
    if "name" in params:
        params["dbname"] = params.pop("name")
    if "pass" in params:
        params["password"] = params.pop("pass")
    if not params:
        params = {
            "host": omero_setting("omero.db.host", "localhost"),
            "port": omero_setting("omero.db.port", "5432"),
            "dbname": omero_setting("omero.db.name", "omero"),
            "user": omero_setting("omero.db.user", "omero"),
            "password": omero_setting("omero.db.pass", ""),
        }
    return {key: str(value) for key, value in params.items() if value not in ("", None)}


def omero_server():
    """(host, port) of OMERO.server: the first of omero.web.server_list."""
    servers = json.loads(omero_setting("omero.web.server_list", '[["localhost", 4064, "omero"]]'))
    host, port = servers[0][0], int(servers[0][1])
    return host, port


def mail_settings():
    """SMTP connection keywords (django.core.mail.get_connection) and the sender.

    OMERO.web's own e-mail settings: it maps omero.mail.host, .port, .username,
    .password, .from and .smtp.starttls.enable (the server's keys) onto Django's."""
    from django.conf import settings as django_settings

    connection = {
        "host": django_settings.EMAIL_HOST,
        "port": int(django_settings.EMAIL_PORT or 25),
        "username": django_settings.EMAIL_HOST_USER or None,
        "password": django_settings.EMAIL_HOST_PASSWORD or None,
        "use_tls": bool(django_settings.EMAIL_USE_TLS),
    }
    return connection, django_settings.SERVER_EMAIL or "omero@localhost"


def data_dir():
    return DATA_DIR or os.path.normpath(omero_setting("omero.data.dir", "/OMERO"))  # noqa: F821


def managed_dir():
    return MANAGED_DIR or os.path.normpath(  # noqa: F821
        omero_setting("omero.managed.dir", "") or os.path.join(data_dir(), "ManagedRepository")
    )


def var_dir():
    return VAR_DIR or os.path.join(os.environ.get("OMERODIR", "."), "var", "storagemanager")  # noqa: F821
