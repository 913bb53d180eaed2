"""Preferences an admin changes at run time, from the admin page (manual chapter 6).

`omero config` (settings.py) gives each one its default; a value saved from the admin
page overrides it, stored in the app's database so every web process and worker sees
the same. Everything else stays a start-up setting.

    from omero_storagemanager import preferences
    preferences.get("purge_rename")
    preferences.set_many({"purge_rename": True}, by="root")
"""
import json

from . import settings
from .settings import NOTIFY_KINDS

VISIBILITY = ("own", "group", "all")


def _bool(value):
    return settings.parse_boolean(value)


def _optional_id(value):
    return settings.parse_optional_id("" if value is None else value)


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
    "copies_required": ("COPIES_REQUIRED", settings.parse_positive_int,
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
    "auto_archive_min_age_hours": ("AUTO_ARCHIVE_MIN_AGE_HOURS", settings.parse_positive_int,
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

    from .models import Preference

    parsed = {name: parse(name, value) for name, value in values.items()}
    with transaction.atomic():
        for name, value in parsed.items():
            Preference.objects.update_or_create(key=name, defaults={"value": value,
                                                                   "changed_by": by})
    return parsed
