"""Peak memory of archiving one collection, at several sizes (issue 4: "peak memory
under 200 MB whatever the collection size").

For each size N (default 20,000 and 100,000), one Project whose single fileset holds N
small files (2 KiB of random bytes each, their size and SHA-1 in the database as OMERO
records them) is archived from scratch to a new HDD location, each archive in a fresh
engine process (archive_bench's child: Django set up, sync, archive_collection). The
figure is that process's peak RSS (VmHWM, see bench.common.peak_rss_mb), with its RSS
after start-up. Flat memory means the peaks are about equal whatever N.

    .venv/bin/python -m bench.archive_memory --workdir /tmp/sm-archive-bench-big
    .venv/bin/python -m bench.archive_memory --sizes 2000 10000   # a quick check

--src DIR runs the engine from another checkout of this repository (e.g. an export of an
earlier commit, for a before/after comparison on the same generated data). The
datasets are cached in --workdir for reruns (a stamp per size, written last); only
the copies an archive makes are deleted. Nothing is written into docs/.
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from bench.archive_bench import _stop_stale_server, write_fileset_files
from bench.common import REPO_ROOT, log

KiB = 2**10
STAMP_VERSION = 1


def _generate(server, root, files, file_kib, seed):
    """One Project, one fileset of `files` files: rows by generate_large, then the files
    written and their size and SHA-1 put in the database (as archive_bench does)."""
    import random

    from testbed.generator import generate_large
    from testbed.omerodb import create_omero_database

    dsn = create_omero_database(server, f"omero_n{files}")
    generate_large(dsn, root, files=files, filesets=1, projects=1, screens=0, disk="none",
                   seed=seed)
    managed = root / "OMERO" / "ManagedRepository"
    rng = random.Random(f"{seed}:{files}")
    return files + write_fileset_files(dsn, managed, [file_kib * KiB] * files, rng)


def _child(src, omerodir, role, spec=None):
    import subprocess

    env = dict(os.environ, OMERODIR=str(omerodir), DJANGO_SETTINGS_MODULE="omeroweb.settings")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "bench.archive_bench", "--child", role,
                           "--child-spec", json.dumps(spec or {})],
                          cwd=src, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{role} child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(args):
    from testbed.omerodir import django_db, libpq_params, web_config, write_config
    from testbed.pg import PostgresServer

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    _stop_stale_server(work / "pg")
    server = PostgresServer(work / "pg").start()
    results = {}
    try:
        for n in args.sizes:
            root = work / f"n{n}"
            stamp = work / f"n{n}.stamp.json"
            wanted = {"version": STAMP_VERSION, "files": n, "kib": args.file_kib, "seed": 1}
            if not (stamp.exists() and json.loads(stamp.read_text()) == wanted):
                log(f"generating {n:,} files of {args.file_kib} KiB in {root}")
                shutil.rmtree(root, ignore_errors=True)
                stamp.unlink(missing_ok=True)
                _generate(server, root, n, args.file_kib, 1)
                stamp.write_text(json.dumps(wanted))  # last: the dataset is complete
            omerodir = work / f"omerodir-n{n}"
            server.drop_database(f"app_n{n}")
            server.create_database(f"app_n{n}")
            shutil.rmtree(omerodir, ignore_errors=True)
            write_config(omerodir, web_config(
                app_db=django_db(server, f"app_n{n}"),
                omero_db=libpq_params(server, f"omero_n{n}"),
                data_dir=root / "OMERO", managed_dir=root / "OMERO" / "ManagedRepository",
                var_dir=work / f"var-n{n}"))
            _child(args.src, omerodir, "migrate")
            mount = work / "run" / f"n{n}"
            shutil.rmtree(mount, ignore_errors=True)
            mount.mkdir(parents=True)
            try:
                got = _child(args.src, omerodir, "archive",
                             {"mount": str(mount), "workers": args.workers, "drop": False})
            finally:
                shutil.rmtree(mount, ignore_errors=True)
            results[n] = got
            log(f"{n:,} files: {got['files']:,} archived in {got['seconds']:.1f} s, "
                f"peak RSS {got['peak_mb']:.0f} MB (start-up {got['startup_mb']:.0f} MB)")
    finally:
        server.stop()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--file-kib", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--workdir", default="/tmp/sm-archive-bench-big")
    parser.add_argument("--src", default=str(REPO_ROOT),
                        help="the checkout whose engine archives (default: this one)")
    args = parser.parse_args(argv)
    if Path(args.workdir).resolve() in (Path("/tmp/sm-archive-bench"), Path("/tmp/sm-bench")):
        parser.error("that work dir holds another benchmark's cached data: pick another")
    results = measure(args)
    print(f"{'files':>10}  {'peak RSS MB':>11}  {'start-up MB':>11}  {'seconds':>8}")
    for n, got in results.items():
        print(f"{n:>10,}  {got['peak_mb']:>11.0f}  {got['startup_mb']:>11.0f}  "
              f"{got['seconds']:>8.1f}")
    print(json.dumps({str(n): got for n, got in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
