"""Console script `omero-storagemanager`: the app's management command with OMERO.web's
settings, for admins and scripts.

    OMERODIR=/opt/omero/web/OMERO.web omero-storagemanager check

is the same as `python .../omeroweb/manage.py storagemanager check`.

`--help` answers before anything is configured (no OMERODIR, or an OMERO.web whose
configuration does not enable the app yet) and says what to configure: it is the first
thing an admin types.
"""
import ast
import os
import sys
from pathlib import Path

PROG = "omero-storagemanager"
HELP_FLAGS = {"-h", "--help", "help"}
ENABLE_STEPS = """\
To configure (see README.md, "Installing into your OMERO.web"):
  export OMERODIR=/opt/omero/web/OMERO.web     # the OMERO.web whose configuration to use
  omero config append omero.web.apps '"omero_storagemanager"'
  omero config append omero.web.apps '"django_q"'
  omero config set omero.web.databases '{"default": {...PostgreSQL of the app...}}'
  python .../omeroweb/manage.py migrate
then `omero-storagemanager check` tells what is still missing."""


def _verb_summaries():
    """Each verb's one-line HELP, read from its module's source: importing the modules
    needs the app configured, which is what --help must not need."""
    from .verbs import VERBS

    here = Path(__file__).resolve().parent / "verbs"
    found = []
    for name in VERBS:
        text = ""
        for node in ast.parse((here / f"{name}.py").read_text()).body:
            if isinstance(node, ast.Assign) and any(
                    getattr(t, "id", None) == "HELP" for t in node.targets):
                text = ast.literal_eval(node.value)
        found.append((name, text))
    return found


def general_help():
    lines = [f"usage: {PROG} VERB [options]   ({PROG} VERB --help for a verb's options)",
             "", "verbs:"]
    lines += [f"  {name:<10} {text}" for name, text in _verb_summaries()]
    return "\n".join(lines)


def _app_enabled():
    """Loads OMERO.web's settings from $OMERODIR; True when they enable this app."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omeroweb.settings")
    import django
    from django.apps import apps

    django.setup()
    return apps.is_installed("omero_storagemanager")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_help = not argv or argv[0] in HELP_FLAGS
    if not os.environ.get("OMERODIR"):
        if wants_help:
            print(general_help() + "\n\nOMERODIR is not set.\n" + ENABLE_STEPS)
            return 0
        print(f"{PROG}: OMERODIR is not set; set it to the OMERO.web "
              "installation whose configuration to use", file=sys.stderr)
        return 2
    if not _app_enabled():
        where = os.environ["OMERODIR"]
        if wants_help:
            print(general_help() + f"\n\nThe OMERO.web at OMERODIR={where} does not enable "
                  "the app yet.\n" + ENABLE_STEPS)
            return 0
        print(f"{PROG}: the OMERO.web at OMERODIR={where} does not enable the app: "
              "omero config append omero.web.apps '\"omero_storagemanager\"' "
              f"(and '\"django_q\"'); `{PROG} --help` says what else to configure",
              file=sys.stderr)
        return 2
    if wants_help:
        print(general_help() + f"\n\nOMERODIR={os.environ['OMERODIR']} enables the app; "
              f"`{PROG} check` checks the rest of its configuration.")
        return 0
    from django.core.management import execute_from_command_line

    execute_from_command_line([PROG, "storagemanager", *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
