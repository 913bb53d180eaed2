"""diagnose: write a support bundle (versions, settings without secrets, jobs, workers
and a thread dump of each, recent log lines) for whoever helps with a problem.

    storagemanager diagnose [--output FILE.tar.gz] [--no-threads]
"""
from ..tasks.diagnose import build

HELP = "write a support bundle (no secrets in it) and print its path"


def add_arguments(parser):
    parser.add_argument("--output", default=None,
                        help="where to write it (default <var_dir>/support/diagnose-*.tar.gz)")
    parser.add_argument("--no-threads", action="store_true",
                        help="do not ask the workers for a thread dump")


def run(command, options):
    path = build(options["output"], dump_threads=not options["no_threads"])
    command.stdout.write(f"support bundle: {path}")
    return 0
