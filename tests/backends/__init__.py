"""Tests of omero_storagemanager.backends, one module per backend module."""
