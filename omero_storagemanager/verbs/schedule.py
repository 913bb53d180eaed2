"""schedule: scheduled tasks (manual 6.6).

    storagemanager schedule list
    storagemanager schedule set KIND "00:00, 12:00"     (an empty string disables it)
    storagemanager schedule run-now KIND
"""
from django.core.management.base import CommandError

from ..tasks.schedules import SCHEDULED, BadSchedule, get_schedules, run_now, set_schedule

HELP = "list, set and run scheduled tasks"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list")
    setter = sub.add_parser("set")
    setter.add_argument("kind", choices=SCHEDULED)
    setter.add_argument("times", help='"HH:MM, HH:MM"; empty to disable')
    sub.add_parser("run-now").add_argument("kind", choices=SCHEDULED)


def run(command, options):
    try:
        if options["action"] == "list":
            for kind, entry in get_schedules().items():
                command.stdout.write(
                    f"{kind:<13} " + (", ".join(entry["times"]) or "disabled")
                    + (f"  next {entry['next_run']:%Y-%m-%d %H:%M}" if entry["next_run"] else ""))
        elif options["action"] == "set":
            times = set_schedule(options["kind"], options["times"])
            command.stdout.write(f"{options['kind']}: " + (", ".join(times) or "disabled"))
        else:
            job = run_now(options["kind"], requested_by=(None, "command line"))
            command.stdout.write(f"job {job.pk} queued")
    except BadSchedule as exc:
        raise CommandError(str(exc))
    return 0
