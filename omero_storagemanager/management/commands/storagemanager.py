"""`manage.py storagemanager <verb>`: the admin's command line (see verbs/)."""
import importlib
import sys

from django.core.management.base import BaseCommand, CommandError

from ...verbs import VERBS


def _verb(name):
    return importlib.import_module(f"omero_storagemanager.verbs.{name}")


class Command(BaseCommand):
    help = "omero-storagemanager administration: " + ", ".join(VERBS)

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        for name in VERBS:
            module = _verb(name)
            module.add_arguments(sub.add_parser(name, help=module.HELP,
                                                description=module.__doc__))

    def handle(self, *args, verb=None, **options):
        code = _verb(verb).run(self, options)
        if code:
            self.stdout.flush()
            raise CommandError(f"{verb} found problems (exit {code})", returncode=code)
        sys.stdout.flush()
