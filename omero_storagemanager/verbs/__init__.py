"""Verbs of the admin command line (`manage.py storagemanager <verb>`), one module each.

Each module has HELP, add_arguments(parser) and run(command, options) -> exit code.
"""
VERBS = ("check", "sync", "scan", "refresh", "inventory", "stats", "archive", "purge",
         "restore", "audit", "location", "jobs", "backup", "schedule", "diagnose",
         "rebuild")
