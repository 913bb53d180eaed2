"""The admin API (OMERO administrators only, checked on the Gateway in every view):
preferences, archive locations, quotas, schedules and tools.

Approving requests is in approvals.py: group owners may do that for their groups.
"""
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum

from .. import preferences, settings
from ..backends.base import LocationError, validate_mount
from ..catalog.holders import BadHolder, check_archive_holder
from ..catalog.people import people
from ..engine import capacity as engine_capacity
from ..engine import locations as engine_locations
from ..models import Copy, Location, Quota
from ..tasks import notify, schedules
from ..tasks.queue import JobRefused, submit
from . import serialize
from .common import api, bad, conflict, json_body, not_found
from .rules import MAX_INT, RuleError, parse_size

LOCATION_FIELDS = ("name", "type", "mount", "max_bytes", "purge_watermark",
                   "purge_enabled", "xml_folder", "current", "s3")


def _size(value, name):
    """Bytes from a number or a text such as "10 GB" (powers of 1024)."""
    if isinstance(value, bool):
        raise bad(f"{name} must be a size")
    if isinstance(value, int):
        if not 0 < value <= MAX_INT:
            raise bad(f"{name} must be from 1 to {MAX_INT} bytes")
        return value
    if isinstance(value, str):
        try:
            size = parse_size(value)
        except RuleError as exc:
            raise bad(f"{name}: {exc}") from None
        if size <= 0:
            raise bad(f"{name} must be positive")
        return size
    raise bad(f"{name} must be a number of bytes or a size such as \"10 GB\"")


def _bool(value, name):
    if not isinstance(value, bool):
        raise bad(f"{name} must be true or false")
    return value


def _text(value, name, limit=4096):
    if not isinstance(value, str) or len(value) > limit:
        raise bad(f"{name} must be text of at most {limit} characters")
    return value.strip()


# -- preferences -----------------------------------------------------------------------

@api(methods=("GET", "POST"), admin=True)
def preferences_view(request, who):
    """GET: every preference with its value, default and meaning. POST {"values": {...}}:
    change some (all checked first; nothing is saved if one is wrong)."""
    if request.method == "POST":
        values = json_body(request).get("values")
        if not isinstance(values, dict) or not values:
            raise bad('send {"values": {"name": value, ...}}')
        try:
            parsed = {name: preferences.parse(name, value) for name, value in values.items()}
        except preferences.BadPreference as exc:
            raise bad(str(exc)) from None
        for name, scope in (("archive_user_id", "user"), ("archive_group_id", "group")):
            if parsed.get(name) is not None:
                _check_omero_id(who, scope, parsed[name], name)
        if {"archive_user_id", "archive_group_id"} & set(parsed):
            try:
                _check_archive_holder(parsed)  # and they fit together
            except BadHolder as exc:
                raise bad(str(exc)) from None
        preferences.set_many(parsed, by=who.user_name)
    current = preferences.get_all()
    params, sender = settings.mail_settings()
    return {"preferences": {name: {"value": current[name], "default": preferences.default(name),
                                   "label": label}
                            for name, (_, _, label) in preferences.PREFERENCES.items()},
            "mail": {"host": params["host"], "port": params["port"], "from": sender,
                     "note": "The mail server is OMERO's (omero.mail.*, set with omero config)."}}


def _check_archive_holder(values):
    """The archive user and group that would result exist in OMERO and fit together."""
    from .. import catalog

    chosen = {name: values[name] if name in values else preferences.get(name)
              for name in ("archive_user_id", "archive_group_id")}
    try:
        conn = catalog.connect()
    except catalog.CatalogUnavailable as exc:
        raise BadHolder(f"cannot check the archive user and group: {exc}") from None
    try:
        check_archive_holder(conn, chosen["archive_user_id"], chosen["archive_group_id"])
    finally:
        conn.close()


def _check_omero_id(who, scope, omero_id, name):
    """A user or group id must name one that OMERO has (asked of the server, through the
    gateway): a purge would otherwise delete the files and then fail to give them away."""
    exists = who.gateway.user_exists if scope == "user" else who.gateway.group_exists
    if not exists(omero_id):
        raise bad(f"{name}: OMERO has no {scope} with id {omero_id}")


# -- locations -------------------------------------------------------------------------

def location_data(location, copies=None):
    data = {"id": location.pk, "name": location.name, "type": location.type,
            "mount": location.mount, "max_bytes": location.max_bytes,
            "purge_watermark": location.purge_watermark,
            "purge_enabled": location.purge_enabled, "xml_folder": location.xml_folder,
            "current": location.current, "created": location.created}
    if location.type == Location.S3:  # its settings: never a secret (backends/s3.py)
        data["s3"] = dict(location.options or {})
    if copies is not None:
        data.update(copies=copies.get("n", 0), used_bytes=copies.get("bytes") or 0)
        cache = engine_capacity.figures(location)
        if cache is not None:  # tape, automated: what the cache disk holds now
            data.update(cache, used_bytes=cache["write_bytes"] + cache["read_bytes"])
        try:
            data["online"] = location.backend().is_online()
        except Exception:
            data["online"] = False
    return data


def _locations():
    stats = {row["location"]: {"n": row["n"], "bytes": row["bytes"]}
             for row in Copy.objects.exclude(state=Copy.EVICTED).values("location")
             .annotate(n=Count("pk"), bytes=Sum("bytes"))}
    return [location_data(loc, stats.get(loc.pk, {})) for loc in Location.objects.order_by("pk")]


@api(methods=("GET", "POST"), admin=True)
def locations(request, who):
    """GET: the locations. POST: add one (name, type, mount, max_bytes, purge_watermark,
    purge_enabled, xml_folder, current); its <mount>/<id>/read|write are created."""
    if request.method == "GET":
        return {"locations": _locations(), "types": [t for t, _ in Location.TYPES]}
    body = json_body(request)
    unknown = set(body) - set(LOCATION_FIELDS)
    if unknown:
        raise bad(f"unknown fields: {', '.join(sorted(unknown))}")
    for required in ("name", "type", "mount", "max_bytes"):
        if required not in body:
            raise bad(f"{required} is required")
    name = _text(body["name"], "name", 255)
    if not name:
        raise bad("name must not be empty")
    if Location.objects.filter(name=name).exists():
        raise conflict(f"a location named {name!r} exists already")
    watermark = body.get("purge_watermark", 80)
    if isinstance(watermark, bool) or not isinstance(watermark, int):
        raise bad("purge_watermark must be a whole number of percent (0-100; 0: purging "
                  "is not used)")
    try:
        location = engine_locations.add_location(
            name, _text(body["type"], "type", 16), _text(body["mount"], "mount"),
            _size(body["max_bytes"], "max_bytes"), watermark,
            _bool(body.get("purge_enabled", False), "purge_enabled"),
            _text(body.get("xml_folder", ""), "xml_folder"),
            _bool(body.get("current", False), "current"), _s3_body(body))
    except LocationError as exc:
        raise bad(str(exc)) from None
    except (IntegrityError, OSError) as exc:
        raise conflict(f"cannot create the location: {exc}") from None
    return {"location": location_data(location, {})}, 201


def _s3_body(body):
    value = body.get("s3") or {}
    if not isinstance(value, dict):
        raise bad("s3 must be an object of S3 settings (bucket, endpoint_url, ...)")
    return value


def _location(pk):
    found = Location.objects.filter(pk=pk).first()
    if found is None:
        raise not_found(f"no location {pk}")
    return found


@api(methods=("POST",), admin=True)
def location_edit(request, who, pk):
    """Change name, max_bytes, purge_watermark, purge_enabled, xml_folder. The mount can
    change only to a place that already holds this location's <id>/ folder (a disk
    mounted elsewhere)."""
    import os

    location = _location(pk)
    body = json_body(request)
    unknown = set(body) - {"name", "max_bytes", "purge_watermark", "purge_enabled",
                           "xml_folder", "mount", "s3"}
    if unknown:
        raise bad(f"these fields cannot be changed here: {', '.join(sorted(unknown))}")
    if "name" in body:
        location.name = _text(body["name"], "name", 255)
        if not location.name:
            raise bad("name must not be empty")
    if "max_bytes" in body:
        location.max_bytes = _size(body["max_bytes"], "max_bytes")
    if "purge_watermark" in body:
        location.purge_watermark = body["purge_watermark"]
    if "purge_enabled" in body:
        location.purge_enabled = _bool(body["purge_enabled"], "purge_enabled")
    try:  # 0 (purging not used) only while purging is off
        engine_locations.check_watermark(location.purge_watermark, location.purge_enabled)
    except LocationError as exc:
        raise bad(str(exc)) from None
    if "xml_folder" in body:
        location.xml_folder = _text(body["xml_folder"], "xml_folder")
    if "mount" in body:
        try:
            mount = validate_mount(_text(body["mount"], "mount"))
        except LocationError as exc:
            raise bad(str(exc)) from None
        if mount != location.mount and not os.path.isdir(os.path.join(mount, str(location.pk))):
            raise conflict(f"{mount} holds no folder {location.pk}/ of this location: the "
                           "mount point can only move with the disk")
        location.mount = mount
    if "s3" in body:
        try:
            engine_locations.edit_s3_settings(location, _s3_body(body))
        except LocationError as exc:
            raise bad(str(exc)) from None
    try:
        with transaction.atomic():
            location.save()
    except IntegrityError:
        raise conflict("another location has that name") from None
    from ..engine.locationfile import refresh_descriptions

    refresh_descriptions([location])  # what a rebuild reads back (issue 20)
    return {"location": location_data(location)}


@api(methods=("POST",), admin=True)
def location_action(request, who, pk, action):
    """current: make it the target of new archives; rescan, purge-cache: submit the job;
    remove: delete it (refused while it holds copies)."""
    pk = int(pk)
    location = _location(pk)
    if action == "current":
        engine_locations.make_current(location)
        return {"location": location_data(location)}
    if action == "remove":
        try:
            engine_locations.remove_location(location)
        except engine_locations.LocationInUse as exc:
            raise conflict(str(exc)) from None
        return {"removed": pk}
    kind = {"rescan": "location_rescan", "purge-cache": "cache_purge"}[action]
    if kind == "cache_purge" and not location.backend().has_read_cache:
        raise conflict(f"location {location.name!r} ({location.type}) has no read cache")
    try:
        job = submit(kind, location=location, requested_by=who.who)
    except JobRefused as exc:
        raise conflict(str(exc)) from None
    return {"job": serialize.job_full(job, True, [])}, 202


# -- quotas ----------------------------------------------------------------------------

def _quotas():
    return [{"scope": q.scope, "omero_id": q.omero_id, "max_bytes": q.max_bytes}
            for q in Quota.objects.order_by("scope", "omero_id")]


@api(methods=("GET", "POST"), admin=True)
def quotas(request, who):
    """GET: defaults and exceptions. POST {"scope": "user"|"group", "omero_id": id or
    null (the default), "max_bytes": size or null (remove)}."""
    if request.method == "POST":
        body = json_body(request)
        scope = body.get("scope")
        if scope not in (Quota.USER, Quota.GROUP):
            raise bad("scope must be user or group")
        omero_id = body.get("omero_id")
        if omero_id is not None and (isinstance(omero_id, bool) or not isinstance(omero_id, int)
                                     or omero_id < 0):
            raise bad("omero_id must be an OMERO id, or null for the default")
        if omero_id is not None and body.get("max_bytes") is not None:
            _check_omero_id(who, scope, omero_id, "omero_id")
        if "max_bytes" not in body:
            raise bad("max_bytes is required (null removes the quota)")
        if body["max_bytes"] is None:
            Quota.objects.filter(scope=scope, omero_id=omero_id).delete()
        else:
            Quota.objects.update_or_create(scope=scope, omero_id=omero_id, defaults={
                "max_bytes": _size(body["max_bytes"], "max_bytes")})
    return {"quotas": _quotas(), "people": _people(who)}


def _people(who):
    """Users and groups of OMERO (ids and names), for choosing quota exceptions."""
    return people(who.catalog())


# -- schedules and tools ---------------------------------------------------------------

def _schedules():
    return {kind: {"times": entry["times"], "next_run": entry["next_run"]}
            for kind, entry in schedules.get_schedules().items()}


@api(methods=("GET", "POST"), admin=True)
def schedules_view(request, who):
    """GET: each schedulable task's times. POST {"kind": ..., "times": "00:00, 12:00"}
    (empty: disabled)."""
    if request.method == "POST":
        body = json_body(request)
        kind, times = body.get("kind"), body.get("times", "")
        if not isinstance(kind, str):
            raise bad(f"kind must be one of {', '.join(schedules.SCHEDULED)}")
        if not (isinstance(times, str) and len(times) <= 200
                or isinstance(times, list) and len(times) <= 48
                and all(isinstance(t, str) and 0 < len(t.strip()) <= 5 for t in times)):
            raise bad('times must be text such as "00:00, 12:00" (at most 200 characters) or '
                      'a list of at most 48 "HH:MM"')
        try:
            schedules.set_schedule(kind, times)
        except schedules.BadSchedule as exc:
            raise bad(str(exc)) from None
    return {"schedules": _schedules()}


@api(methods=("POST",), admin=True)
def run_now(request, who, kind):
    try:
        job = schedules.run_now(kind, requested_by=who.who)
    except schedules.BadSchedule as exc:
        raise not_found(str(exc)) from None
    return {"job": serialize.job_full(job, True, [])}, 202


@api(methods=("POST",), admin=True)
def test_email(request, who):
    try:
        recipients = notify.test_email()
    except ValueError as exc:
        raise conflict(str(exc)) from None
    except Exception as exc:  # the mail server's own refusal, said plainly
        raise conflict(f"the mail server refused: {exc}") from None
    return {"sent_to": recipients}
