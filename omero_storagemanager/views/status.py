"""System status for the overview page and GET /api/v1/status/: the OMERO database,
the repository's free space, each archive location, the workers and the queue.

Paths, connection details and mount points are for admins only.
"""
import logging
import shutil

from django.db.models import Count, Q, Sum

from .. import catalog, settings
from ..engine import capacity
from ..models import Collection, Copy, Job, Location
from ..version import __version__

logger = logging.getLogger(__name__)


def repository_status(admin):
    status = []
    for label, path in (("data_dir", settings.data_dir()), ("managed_dir", settings.managed_dir())):
        entry = {"name": label}
        if admin:
            entry["path"] = path
        try:
            usage = shutil.disk_usage(path)
            entry.update(online=True, total_bytes=usage.total, free_bytes=usage.free)
        except OSError as exc:
            entry.update(online=False,
                         error=(exc.strerror or str(exc)) if admin else "unreachable")
        status.append(entry)
    return status


def locations_status(admin):
    used = dict(Copy.objects.exclude(state=Copy.EVICTED).values("location")
                .annotate(total=Sum("bytes")).values_list("location", "total"))
    found = []
    for location in Location.objects.order_by("name"):
        try:
            online = location.backend().is_online()
        except Exception as exc:  # a broken mount must not break the page
            logger.warning("location %s: %s", location.name, exc)
            online = False
        entry = {"id": location.pk, "name": location.name, "type": location.type,
                 "online": online, "current": location.current,
                 "used_bytes": used.get(location.pk) or 0, "max_bytes": location.max_bytes}
        cache = capacity.figures(location)
        if cache is not None:  # tape, automated: the cache disk now, not every copy ever
            entry.update(cache, used_bytes=cache["write_bytes"] + cache["read_bytes"])
        if admin:
            entry["mount"] = location.mount
        found.append(entry)
    return found


def workers_status():
    """django-q2 clusters seen alive (they report every few seconds through the cache)."""
    from django.core.cache import caches
    from django.core.cache.backends.dummy import DummyCache
    from django_q.conf import Conf
    from django_q.status import Stat

    try:
        if isinstance(caches[Conf.CACHE], DummyCache):
            return {"known": False, "clusters": 0, "workers": 0,
                    "note": "set omero.web.caches to a shared cache to see the workers"}
        stats = Stat.get_all()
    except Exception as exc:
        logger.warning("cannot read the django-q2 cluster status: %s", exc)
        return {"known": False, "clusters": 0, "workers": 0, "note": str(exc)}
    return {"known": True, "clusters": len(stats),
            "workers": sum(len(s.workers) for s in stats),
            "states": sorted({str(s.status) for s in stats})}


def queue_status():
    counts = Job.objects.aggregate(
        queued=Count("pk", filter=Q(state=Job.QUEUED)),
        waiting=Count("pk", filter=Q(state=Job.WAITING)),
        running=Count("pk", filter=Q(state=Job.RUNNING)),
        failed=Count("pk", filter=Q(state=Job.FAILED)))
    counts["length"] = counts["queued"] + counts["waiting"] + counts["running"]
    return counts


def _visible_count(who, db_ok):
    """The collections this user may see; None while OMERO's database (which says what
    a non-admin may see) cannot be reached: the overview still says the rest."""
    collections = Collection.objects.filter(gone=False)
    if who.admin:
        return collections.count()
    if not db_ok:
        return None
    try:
        return who.access.visible(collections).count()
    except catalog.CatalogUnavailable:
        return None


def status(who):
    """The overview's figures for the signed-in user."""
    db_ok, db_detail = catalog.ping()
    admin = who.admin
    data = {
        "version": __version__,
        "demo": settings.DEMO,
        "user": {"id": who.user_id, "name": who.user_name, "admin": admin},
        "omero_db": {"reachable": db_ok},
        # Only what this user may see: a plain user's overview is not the facility's.
        "collections": _visible_count(who, db_ok),
        "locations": locations_status(admin),
        "workers": workers_status(),
        "queue": queue_status(),
        "repository_space": [{k: r[k] for k in ("name", "online", "total_bytes", "free_bytes")
                              if k in r} for r in repository_status(False)],
    }
    if admin:
        data["omero_db"]["detail"] = db_detail
        data["repository"] = repository_status(True)
    return data
