"""What the verbs share: opening the catalog, repository paths, parsing collection keys."""
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
