"""The catalog: read-only SQL on the OMERO database. All SQL about OMERO lives here.

It turns OMERO rows into plain objects for the engine; it never writes.
"""
from .db import CatalogUnavailable, connect, ping  # noqa: F401
