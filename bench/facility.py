"""Generate (or find cached) a benchmark facility, and say where it is.

The facility of issue 24, 10 million original files, a million filesets, 100,000
Projects and 5,000 Screens in the OMERO-shaped database, no files on disk, bulk-loaded
with COPY (testbed.generator.generate_large), eventlog rows included:

    .venv/bin/python -m bench.facility --files 10000000 --filesets 1000000 \\
        --projects 100000 --screens 5000 --disk none

It is cached in --workdir under the parameters' key, where bench.scan_bench
(--disk none --modes catalog), bench.incremental_bench and bench.ui_bench find it.
"""
import argparse
import json
import sys

from bench.common import Dataset, Params, log, opened


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000_000)
    parser.add_argument("--filesets", type=int, default=1_000_000)
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--screens", type=int, default=5_000)
    parser.add_argument("--disk", choices=["sparse", "tiny", "none"], default="none")
    parser.add_argument("--workdir", default="/tmp/sm-bench")
    args = parser.parse_args(argv)
    params = Params(args.files, args.filesets, args.projects, args.screens, args.disk)
    with opened(Dataset(args.workdir, params)) as dataset:
        log(f"facility ready in {dataset.dir}")
        print(json.dumps(dataset.summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
