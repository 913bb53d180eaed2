"""omero-storagemanager: scan, archive, purge and restore OMERO Projects and Screens.

An OMERO.web app. See docs/architecture.md for the layers and README.md to install.
"""
from .version import __version__  # noqa: F401
