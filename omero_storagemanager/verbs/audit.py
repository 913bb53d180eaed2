"""audit: re-hash archive copies against their manifests (fixity).

    storagemanager audit [--location ID] [--fraction 0.1]

--fraction audits that share of the copies, least recently audited first (a rolling
audit). Exit 1 when a copy fails.
"""
from ..engine.locations import audit
from ..models import Location

HELP = "check archive copies against their manifests"


def add_arguments(parser):
    parser.add_argument("--location", type=int)
    parser.add_argument("--fraction", type=float, default=1.0)


def run(command, options):
    location = Location.objects.get(pk=options["location"]) if options["location"] else None
    report = audit(location, options["fraction"])
    command.stdout.write(f"audited {report.audited} copies: {len(report.failed)} failed, "
                         f"{len(report.unreachable)} not reachable now")
    for line in report.problems + [f"not reachable: {u}" for u in report.unreachable]:
        command.stdout.write("  " + line)
    return 1 if report.failed else 0
