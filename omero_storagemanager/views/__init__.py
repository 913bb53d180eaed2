"""Views: thin. They check who is asking, call the engine or the catalog, answer.

    pages.py      the Storage tab's HTML pages (shells for the scripts)
    api.py        status, collections, actions, statistics (JSON)
    plugins.py    what the webclient plugins ask: an object's collections, breakdowns
    jobs.py       the queue and history, logs, cancel and retry
    approvals.py  archive and restore requests, approve and decline
    admin.py      preferences, locations, quotas, schedules, tools (admins only)
    common.py     who is asking, JSON errors, the decorators
    listing.py    rules.py  states.py  status.py  serialize.py: their helpers

Every view takes OMERO.web's `conn` (a BlitzGateway, or a stand-in Gateway in tests and
the demo) and turns it into a Gateway with `gateway_for`.
"""
