"""The two baselines the archive benchmark (bench/archive_bench.py) compares with.

shell           What an admin would type to copy a folder with verification:

                    cd SRC && find . -type f -print0 | xargs -0 sha1sum > MANIFEST
                    cp -r SRC DEST
                    cd DEST && sha1sum -c --quiet MANIFEST

                (SHELL_SCRIPT below; no fsync: `cp` leaves the copy in the page cache and
                `sha1sum -c` reads it back from there.)

cp-sync         A reference, not a goal: `cp -r SRC DEST && sync -f DEST`, a copy made
                durable but never verified: about the least I/O any archive must do
                (read everything once, write it, flush it to the disk).

cp-sync-reread  The floor of a copy verified from the disk, not a goal: cp-sync, then the
                copy's pages dropped from the page cache (posix_fadvise DONTNEED per file)
                and every file read back (`xargs -P2 cat`: both cores) with no hash.
                The I/O an archive must do (read, write, flush, read back from the
                disk), phase after phase.

omero-archiving The file method of omero-archiving (aherbert/omero-archiving,
                tools/bin/archive_to_file.py), re-implemented here: for each file, one
                pass reading the source in 64 KiB blocks, writing each block to the copy
                and updating MD5, SHA-256 and Adler-32; then the copy is read again in
                64 KiB blocks with all three, and the digests compared. Sequential, one
                file after the other, Python's buffered files, no fsync (as the original).
                Its per-file bookkeeping (an .ark register file, e-mails, deleting the
                original and linking to the copy) is left out: copying and verifying only.

Each runs in its own process and prints one JSON line: {"seconds", "files", "bytes"}.
The seconds are wall time around the work alone (process start-up excluded); with
--drop-caches the page cache is emptied first (`sync; echo 3 > /proc/sys/vm/drop_caches`,
root only), untimed.

    python -m bench.archive_baselines shell SRC DEST [--drop-caches]
    python -m bench.archive_baselines cp-sync SRC DEST [--drop-caches]
    python -m bench.archive_baselines cp-sync-reread SRC DEST [--drop-caches]
    python -m bench.archive_baselines omero-archiving SRC DEST [--drop-caches]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zlib

BLOCK = 65536  # omero-archiving's block size
SHELL_SCRIPT = r"""
set -euo pipefail
cd "$SRC" && find . -type f -print0 | xargs -0 sha1sum > "$MANIFEST"
cp -r "$SRC" "$DEST"
cd "$DEST" && sha1sum -c --quiet "$MANIFEST"
"""


class Mismatch(Exception):
    pass


def shell(src, dest):
    """The three commands in one bash; DEST must not exist (cp -r makes it)."""
    manifest = os.path.join(os.path.dirname(os.path.abspath(dest)),
                            os.path.basename(dest) + ".sha1")
    env = dict(os.environ, SRC=src, DEST=dest, MANIFEST=manifest)
    subprocess.run(["bash", "-c", SHELL_SCRIPT], check=True, env=env)


def cp_sync(src, dest):
    subprocess.run(["cp", "-r", src, dest], check=True)
    subprocess.run(["sync", "-f", dest], check=True)


REREAD_SCRIPT = r"""
set -euo pipefail
cd "$DEST" && find . -type f -print0 | xargs -0 -P2 -n 64 cat > /dev/null
"""


def cp_sync_reread(src, dest):
    cp_sync(src, dest)
    for top, _, names in os.walk(dest):
        for name in names:
            fd = os.open(os.path.join(top, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    subprocess.run(["bash", "-c", REREAD_SCRIPT], check=True, env=dict(os.environ, DEST=dest))


def create_sync(src, dest):
    """The file system's floor for many small files: create every file of the tree
    (empty: `cp --attributes-only`) and flush; no data, no hash."""
    subprocess.run(["cp", "-r", "--attributes-only", src, dest], check=True)
    subprocess.run(["sync", "-f", dest], check=True)


def _three_digests():
    return [hashlib.md5(), hashlib.sha256()], 1


def copy_and_verify(source, target):
    """One file, the omero-archiving way: copy with three checksums, re-read, compare."""
    hashers, adler = _three_digests()
    size = 0
    with open(source, "rb") as src, open(target, "wb") as dst:
        while True:
            block = src.read(BLOCK)
            if not block:
                break
            size += len(block)
            dst.write(block)
            for h in hashers:
                h.update(block)
            adler = zlib.adler32(block, adler)
    written = [h.hexdigest() for h in hashers] + [adler & 0xFFFFFFFF]
    hashers, adler = _three_digests()
    with open(target, "rb") as again:
        while True:
            block = again.read(BLOCK)
            if not block:
                break
            for h in hashers:
                h.update(block)
            adler = zlib.adler32(block, adler)
    if written != [h.hexdigest() for h in hashers] + [adler & 0xFFFFFFFF]:
        raise Mismatch(f"{target}: the copy has different checksums")
    return size


def omero_archiving(src, dest):
    """Every file below src copied to the same relative path below dest."""
    files = nbytes = 0
    for top, dirs, names in os.walk(src):
        dirs.sort()
        folder = os.path.join(dest, os.path.relpath(top, src))
        os.makedirs(folder, exist_ok=True)
        for name in sorted(names):
            nbytes += copy_and_verify(os.path.join(top, name), os.path.join(folder, name))
            files += 1
    return files, nbytes


def tree_size(root):
    files = nbytes = 0
    for top, _, names in os.walk(root):
        for name in names:
            files += 1
            nbytes += os.path.getsize(os.path.join(top, name))
    return files, nbytes


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=["shell", "cp-sync", "cp-sync-reread", "create-sync",
                                           "omero-archiving"])
    parser.add_argument("src")
    parser.add_argument("dest", help="must not exist yet")
    parser.add_argument("--drop-caches", action="store_true")
    args = parser.parse_args(argv)
    if os.path.lexists(args.dest):
        parser.error(f"{args.dest} exists: the copy goes to a new folder")
    if args.drop_caches:
        drop_caches()
    started = time.perf_counter()
    if args.method != "omero-archiving":
        {"shell": shell, "cp-sync": cp_sync, "cp-sync-reread": cp_sync_reread,
         "create-sync": create_sync}[args.method](args.src, args.dest)
        seconds = time.perf_counter() - started
        files, nbytes = tree_size(args.dest)
    else:
        files, nbytes = omero_archiving(args.src, args.dest)
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "files": files, "bytes": nbytes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
