"""What the verbs share: opening the catalog, repository paths, parsing collection keys,
the gateway to OMERO.server and one-line error messages."""
from django.core.management.base import CommandError

from .. import catalog, settings
from ..catalog.collections import parse_key
from ..catalog.paths import RepositoryPaths


def open_catalog():
    try:
        return catalog.connect()
    except catalog.CatalogUnavailable as exc:
        raise CommandError(str(exc))


def repository_paths():
    return RepositoryPaths(settings.data_dir(), settings.managed_dir())


def parse_keys(texts):
    try:
        return [parse_key(text) for text in texts]
    except ValueError as exc:
        raise CommandError(str(exc))


def collections_for(conn, texts):
    """Collection rows for keys like Project:12, synced with OMERO first."""
    from ..catalog.collections import UnknownCollection, format_key
    from ..engine.sync import sync_collections
    from ..models import Collection

    keys = parse_keys(texts)
    sync_collections(conn, keys)
    found = {(c.kind, c.omero_id): c for c in Collection.objects.filter(
        omero_id__in=[oid for _, oid in keys], gone=False)}
    missing = [format_key(*k) for k in keys if k not in found]
    if missing:
        raise CommandError(str(UnknownCollection("not in OMERO: " + ", ".join(missing))))
    return [found[k] for k in keys]


def keyed(collection, exc):
    """'<key>: <message>' with the key once: most engine errors name their collection
    already ("Project:105: ...")."""
    message, prefix = str(exc), f"{collection.key}: "
    return message if message.startswith(prefix) else prefix + message


# The workers need the service gateway too: it lives with the gateway seam, below the
# verbs and the tasks alike.
from ..gateway.service import (admin_gateway, error_line, is_ice,  # noqa: E402,F401
                               omero_server_error)
