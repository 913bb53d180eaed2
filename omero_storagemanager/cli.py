"""Console script `omero-storagemanager`: the app's management command with OMERO.web's
settings, for admins and scripts.

    OMERODIR=/opt/omero/web/OMERO.web omero-storagemanager check

is the same as `python .../omeroweb/manage.py storagemanager check`.
"""
import os
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("OMERODIR"):
        print("omero-storagemanager: OMERODIR is not set; set it to the OMERO.web "
              "installation whose configuration to use", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omeroweb.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["omero-storagemanager", "storagemanager", *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
