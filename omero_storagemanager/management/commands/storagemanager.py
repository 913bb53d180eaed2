"""`manage.py storagemanager <verb>`: the admin's command line (see verbs/).

Errors are one line on stderr and a non-zero exit (Django's "CommandError: ..."), also
when OMERO.server cannot be reached or refuses (GatewayError, omero-py's Ice
exceptions); --traceback shows where one came from."""
import importlib
import sys

from django.core.management.base import BaseCommand, CommandError

from ...gateway import GatewayError
from ...verbs import VERBS
from ...verbs.common import error_line, is_ice, omero_server_error


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
        try:
            code = _verb(verb).run(self, options)
        except GatewayError as exc:  # OMERO.server refused, or was never reached
            raise CommandError(error_line(exc)) from exc
        except Exception as exc:
            if not is_ice(exc):  # omero-py's own exceptions: Ice's, OMERO.server's
                raise
            raise CommandError(omero_server_error(exc)) from exc
        if code:
            self.stdout.flush()
            raise CommandError(f"{verb} found problems (exit {code})", returncode=code)
        sys.stdout.flush()
