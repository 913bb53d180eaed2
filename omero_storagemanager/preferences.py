"""Preferences an admin changes at run time, from the admin page (manual chapter 6).

`omero config` (settings.py) gives each one its default; a value saved from the admin
page overrides it, stored in the app's database so every web process and worker sees
the same. Everything else stays a start-up setting.

    from omero_storagemanager import preferences
    preferences.get("purge_rename")
    preferences.set_many({"purge_rename": True}, by="root")
"""
import json
import re

from . import settings
from .settings import NOTIFY_KINDS

VISIBILITY = ("own", "group", "all")


def _bool(value):
    return settings.parse_boolean(value)


BIGINT = 2**63 - 1


def _optional_id(value):
    """An OMERO id, or null / "" for none (the setting cleared)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be an OMERO id (a whole number, 0 or more) or null")
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,19}", value.strip()):
        raise ValueError("must be an OMERO id written with the digits 0-9, or null")
    number = int(value)
    if not 0 <= number <= BIGINT:
        raise ValueError(f"must be an OMERO id up to {BIGINT}, or null")
    return number


def _whole(low, high):
    """A whole number from low to high (not true/false, not 1.5, not a huge number)."""
    def parse(value):
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value
    return parse


def _visibility(value):
    if value not in VISIBILITY:
        raise ValueError("must be one of " + ", ".join(VISIBILITY))
    return value


def _list_of(parser):
    def parse(value):
        return parser(json.dumps(value) if not isinstance(value, str) else value)
    return parse


# name: (settings attribute giving the default, parser, label for the admin page)
PREFERENCES = {
    "visibility": (None, _visibility,
                   "Who sees other users' collections: only their owner (own), members of "
                   "the group where OMERO's group permissions let them see each other's "
                   "data (group), or everyone (all). Admins and group owners always do."),
    "group_owners_manage": (None, _bool,
                            "Group owners may archive, purge and restore their group's "
                            "collections and approve their group's requests."),
    "require_approval": (None, _bool,
                         "Users' archive and restore requests wait for an admin's approval "
                         "(off: they run at once)."),
    "copies_required": ("COPIES_REQUIRED", _whole(1, 100),
                        "Verified copies needed before a purge may delete a file."),
    "purge_rename": ("PURGE_RENAME", _bool,
                     'Prefix purged Projects and Screens with "(archived) ".'),
    "archive_user_id": ("ARCHIVE_USER_ID", _optional_id,
                        "Give purged collections to this OMERO user (empty: keep)."),
    "archive_group_id": ("ARCHIVE_GROUP_ID", _optional_id,
                         "Move purged collections to this OMERO group (empty: keep)."),
    "notify": ("NOTIFY", _list_of(settings.parse_notify),
               "E-mails sent: " + ", ".join(NOTIFY_KINDS)),
    "admin_emails": ("ADMIN_EMAILS", _list_of(settings.parse_emails),
                     "Who gets the storage manager's e-mails (empty: omero.web.admins)."),
    "auto_archive_users": ("AUTO_ARCHIVE_USERS", _list_of(settings.parse_id_list),
                           "Automatic archive: only these user ids (empty: all users)."),
    "auto_archive_min_age_hours": ("AUTO_ARCHIVE_MIN_AGE_HOURS", _whole(1, 24 * 365 * 100),
                                   "Automatic archive: minimal age of the newest file."),
}
_BUILTIN_DEFAULTS = {"visibility": "group", "group_owners_manage": True,
                     "require_approval": True}


class BadPreference(ValueError):
    pass


def default(name):
    attribute = PREFERENCES[name][0]
    return getattr(settings, attribute) if attribute else _BUILTIN_DEFAULTS[name]


def get(name):
    from .models import Preference

    if name not in PREFERENCES:
        raise BadPreference(f"unknown preference {name!r}")
    row = Preference.objects.filter(key=name).first()
    return default(name) if row is None else row.value


def get_all():
    from .models import Preference

    saved = dict(Preference.objects.values_list("key", "value"))
    return {name: saved.get(name, default(name)) for name in PREFERENCES}


def parse(name, value):
    if name not in PREFERENCES:
        raise BadPreference(f"unknown preference {name!r}")
    try:
        return PREFERENCES[name][1](value)
    except (ValueError, TypeError) as exc:
        raise BadPreference(f"{name}: {exc}") from None


def set_many(values, by=""):
    """Validate every value first; save all or nothing."""
    from django.db import transaction
    from django.db.models import JSONField, Value

    from .models import Preference

    parsed = {name: parse(name, value) for name, value in values.items()}
    with transaction.atomic():
        for name, value in parsed.items():
            if value is None:  # a cleared setting: JSON null, not SQL NULL (the column is NOT NULL)
                value = Value(None, JSONField())
            Preference.objects.update_or_create(key=name, defaults={"value": value,
                                                                   "changed_by": by})
    return parsed
