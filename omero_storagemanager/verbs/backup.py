"""backup: dumps of the app's database (manual chapter 11).

    storagemanager backup run
    storagemanager backup list
    storagemanager backup restore [current|0|1|...]
"""
from django.core.management.base import CommandError

from ..engine.backup import BackupError, list_backups, restore_backup, run_backup

HELP = "run, list and restore backups of the app database"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("run")
    sub.add_parser("list")
    sub.add_parser("restore").add_argument("name", nargs="?", default="current")


def run(command, options):
    try:
        if options["action"] == "run":
            backup = run_backup()
            command.stdout.write(f"backup written: {backup.path} ({backup.bytes} bytes)")
        elif options["action"] == "list":
            for b in list_backups():
                command.stdout.write(f"{b.name:<8} {b.created:%Y-%m-%d %H:%M:%S} "
                                     f"{b.bytes:>12} {b.path}")
        else:
            path = restore_backup(options["name"])
            command.stdout.write(f"restored the app database from {path}")
    except BackupError as exc:
        raise CommandError(str(exc))
    return 0
