"""The engine: the use cases (sync, scan, archive, purge, restore, audit, quotas).

It knows nothing of HTTP or django-q2: views, tasks and commands call it with a catalog
connection, a gateway, backends and a progress reporter, so tests call it directly.
"""
