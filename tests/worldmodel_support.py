"""The world model of issue 19: archive, purge and restore in a world that changes.

A Hypothesis RuleBasedStateMachine (WorldMachine) drives the real engine (archive,
purge single and joint, restore, scan, plan_purge, location audit and rescan) on real
files, a real OMERO-shaped PostgreSQL database and real locations (an HDD location and
a symlink location), while the world changes between steps and during them: Datasets
and Plates linked into a second holder or unlinked, an Image's links deleted, a primary
file re-imported (new bytes, same path), rewritten in place (also keeping its mtime),
truncated or hard-linked, a directory of the repository replaced by a symlink to a
directory outside it, a bag file deleted or damaged, a location or the whole repository
taken away (renamed away: the unmount stand-in), a purge/restore/archive killed with
SIGKILL in a subprocess and run again.

The test keeps its own model, independent of the app's rows: every file OMERO
references (its own SQL over the OMERO database, every holder of each file including
orphan Images, Datasets and Plates) and the SHA-1 of the bytes the world last wrote
there. After every step it checks:

  1. bytes     every referenced file has its bytes on primary storage, or in a file of a
               complete bag on a location (the bag file on disk is hashed, not the app's
               rows);
  2. outside   nothing outside the repository and the locations' <mount>/<id> trees was
               touched (a sentinel directory, the in-place import targets, a directory
               moved out and symlinked, a bare mount point while the repository or a
               location is away), nor the hard links the world made beside primary
               files, nor the in-place import links;
  3. states    every collection's state agrees with its files: online/archived => all
               present (not absent, not a link into a location); purged => all absent or
               linked, and at least one file; archived => a bag of it on some location;
               a file an orphan object holds is present; a hard-linked file is not
               purged;
  4. restore   a restore that completes gives back identical bytes, sizes, modes and
               mtimes in ns (recorded before the purge), the OMERO name, owner and group
               (StandInGateway.describe) and the user's annotations;
  E. errors    an engine step raises only the app's own errors (ArchiveError,
               PurgeError, RestoreWaiting, CollectionBusy, LocationOffline...), never
               another traceback, and no message repeats its prefix.

Each problem carries a tag (1-lost, 2-outside, 2-mount-point,
2-symlinked-repository-folder, 2-symlinked-location-folder, 2-hardlink-name, 2-inplace-link,
2-dry-run, 3-online-absent, 3-archived-nobag, 3-purged-empty, 3-purged-present,
3-orphan-holder, 3-hardlink-purged, 4-files, 4-omero, 4-resurrected, E-traceback,
E-prefix); tags in
Env.ignore (WORLD_MODEL_IGNORE, --ignore) are counted but do not stop the run, to find
what hides behind a known bug.

What the world did to a holder is excused where the app is not at fault: a collection
that gains (by a link the world made) a file that is absent is not "archived with a file
absent", a purged collection that gains a present file is not "purged with a file
present"; a bag file is damaged only when its bytes are kept elsewhere too.

Used by tests/test_world_model.py (quick form) and tests/reliability/world_model.py
(long form: `python -m tests.reliability.world_model --steps 20000 --seeds 50`).
"""
import functools
import hashlib
import inspect
import json
import os
import queue
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROJECTS = ["Project:1", "Project:2", "Project:3", "Project:4"]
SCREENS = ["Screen:1", "Screen:2", "Screen:3"]
KEYS = PROJECTS + SCREENS
DATASETS = [f"Dataset:{n}" for n in range(1, 7)]
PLATES = [f"Plate:{n}" for n in range(1, 5)]
LOCATIONS = ("hdd", "link")  # an HDD location and a symlink (online) location
TEMPLATE_DB = "wm_template"
GB = 10**9
ARCHIVE_USER, ARCHIVE_GROUP = 1, 2  # guest, guest: where purge moves a collection


# -- the tiny facility ------------------------------------------------------------------

def _builder_class():
    from testbed.generator import UINT16, FacilityBuilder

    class TinyFacility(FacilityBuilder):
        """A few collections of a few small files, with every kind of sharing:

        Project:1 Alpha     Dataset:1 (a two-file fileset with a subfolder; one image of
                            a fileset whose other image is in no Dataset), Dataset:2 (one
                            series of a fileset shared with Project:2), a PDF on it, a CSV
                            on it and on Project:2, a map annotation
        Project:2 Beta      Dataset:3 (the other series), Dataset:4 (its own fileset)
        Project:3 Gamma     Dataset:5: an OMERO 4 image (Pixels/Dir-001/1000 and its
                            original in Files/) and an in-place import (a symlink)
        Project:4 Empty     nothing
        Dataset:6           in no Project (an orphan holder), its own fileset
        Screen:1            Plate:1, and Plate:2 (also in Screen:2); a file on Plate:1
        Screen:2            Plate:2
        Screen:3            Plate:3
        Plate:4             in no Screen
        """

        def build(self):
            m = self.moment
            self.repositories()
            lab = self.group("Lab", "read-write", "the world model's lab")
            hcs = self.group("Screening", "read-only")
            ana = self.user("ana", "Ana", "Lima", "ana@example.org", [lab, hcs],
                            owner_of=[lab, hcs])
            ben = self.user("ben", "Ben", "Okafor", "ben@example.org", [lab, hcs])
            alpha = self.project(ana, lab, m(2020, 1), "Alpha")
            beta = self.project(ben, lab, m(2020, 2), "Beta")
            gamma = self.project(ana, lab, m(2020, 3), "Gamma")
            self.project(ben, lab, m(2020, 4), "Empty")
            d1 = self.dataset(ana, lab, m(2020, 1), "A1", [alpha])
            d2 = self.dataset(ana, lab, m(2020, 1), "A2", [alpha])
            d3 = self.dataset(ben, lab, m(2020, 2), "B1", [beta])
            d4 = self.dataset(ben, lab, m(2020, 2), "B2", [beta])
            d5 = self.dataset(ana, lab, m(2020, 3), "G1", [gamma])
            d6 = self.dataset(ben, lab, m(2020, 5), "Orphan")
            _, fa = self.fs_import(ana, lab, m(2020, 1), "data/a",
                                   [("a 1.tif", 3_000), ("sub/a 1.companion", 700)],
                                   [("a 1.tif", 0)])
            _, shared = self.fs_import(ana, lab, m(2020, 1), "data/s", [("s.lif", 5_000)],
                                       [("s.lif [S1]", 0), ("s.lif [S2]", 1)])
            _, fb = self.fs_import(ben, lab, m(2020, 2), "data/b", [("b.czi", 4_000)],
                                   [("b.czi", 0)])
            _, fo = self.fs_import(ben, lab, m(2020, 2), "data/o", [("o.tif", 2_000)],
                                   [("o.tif [1]", 0), ("o.tif [2]", 1)])
            _, f6 = self.fs_import(ben, lab, m(2020, 5), "data/d6", [("d6.tif", 1_500)],
                                   [("d6.tif", 0)])
            _, ip = self.fs_import(ana, lab, m(2020, 3), "share/in place",
                                   [("ip.czi", 2_500)], [("ip.czi", 0)], inplace=True)
            self.ids.skip_to("pixels", 1000)
            self.ids.skip_to("originalfile", 1000)
            legacy = self.legacy_image(ana, lab, m(2013, 6), "old.dv", (16, 16, 1, 1, 1),
                                       UINT16, "home/ana", original=1_200)
            when = m(2020, 6)
            self.link_images(d1, fa + fo[:1], ana, lab, when)
            self.link_images(d2, shared[:1], ana, lab, when)
            self.link_images(d3, shared[1:], ben, lab, when)
            self.link_images(d4, fb, ben, lab, when)
            self.link_images(d5, [legacy] + ip, ana, lab, when)
            self.link_images(d6, f6, ben, lab, when)
            self.attach(ana, lab, m(2020, 1), "protocol.pdf", 900, "application/pdf",
                        [("project", alpha)], "home/ana")
            self.attach(ana, lab, m(2020, 2), "shared.csv", 300, "text/csv",
                        [("project", alpha), ("project", beta)], "home/ana")
            self.map_annotation(ana, lab, m(2020, 1), [("Stain", "DAPI")],
                                [("project", alpha)])

            def field(r, c, f):
                return f"{chr(ord('A') + r)}{c + 1}_f{f + 1}.tif"

            s1 = self.screen(ana, hcs, m(2021, 1), "Screen 1")
            s2 = self.screen(ben, hcs, m(2021, 2), "Screen 2")
            s3 = self.screen(ben, hcs, m(2021, 3), "Screen 3")
            p1 = self.plate_import(ana, hcs, m(2021, 1), [s1], "Plate 1", "E:/p1", 1, 2, 1,
                                   "p1.xdce", field, (500, 1_500))
            self.plate_import(ben, hcs, m(2021, 2), [s1, s2], "Plate 2", "E:/p2", 1, 2, 1,
                              "p2.xdce", field, (500, 1_500))
            self.plate_import(ben, hcs, m(2021, 3), [s3], "Plate 3", "E:/p3", 1, 1, 2,
                              "p3.xdce", field, (500, 1_500))
            self.plate_import(ben, hcs, m(2021, 4), [], "Plate 4", "E:/p4", 1, 1, 1,
                              "p4.xdce", field, (500, 1_500))
            self.attach(ana, hcs, m(2021, 1), "layout.csv", 200, "text/csv",
                        [("plate", p1)], "home/ana")

        def plate_import(self, uid, gid, when, screens, *args, **kwargs):
            # The generator's index files are 20-80 kB: small ones here.
            randint = self.rng.randint
            self.rng.randint = lambda a, b: randint(min(a, 2_000), min(b, 4_000))
            try:
                return super().plate_import(uid, gid, when, screens, *args, **kwargs)
            finally:
                self.rng.randint = randint

    return TinyFacility


def sha1_of(path):
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def short(sha1):
    return sha1[:10] if sha1 else str(sha1)


class Template:
    """The tiny facility, built once: a template database and a template directory.
    Each example clones both (CREATE DATABASE ... TEMPLATE, a copy of the tree)."""

    def __init__(self, server, base):
        from testbed.generator import _connect
        from testbed.omerodb import create_omero_database

        self.server = server
        self.base = Path(base)
        self.root = self.base / "template"
        if self.root.exists():
            shutil.rmtree(self.root)
        dsn = create_omero_database(server, TEMPLATE_DB)
        builder = _builder_class()(self.root, seed=19)
        builder.build()
        conn = _connect(dsn)
        try:
            builder.flush(conn)
        finally:
            conn.close()
        self.truth = builder.truth()
        found = sorted(self.truth.collections)
        if found != sorted(KEYS):
            raise RuntimeError(f"the tiny facility's collections are {found}, not {KEYS}")
        # Modification times with nanoseconds (same second as OMERO's record): a restore
        # must give back st_mtime_ns exactly, not a float's microseconds.
        rng = random.Random(19)
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    continue
                st = os.stat(path)
                second = st.st_mtime_ns - st.st_mtime_ns % 10**9
                os.utime(path, ns=(st.st_atime_ns, second + rng.randrange(1, 10**9)))
        # Dropping a database takes a while (checkpoint, files): in a thread of its own,
        # while the next example runs.
        self.drops = queue.Queue()
        self.dropper = threading.Thread(target=self._drop_loop, daemon=True)
        self.dropper.start()

    def _drop_loop(self):
        while True:
            name = self.drops.get()
            if name is None:
                return
            try:
                self.server.drop_database(name)
            except Exception:  # noqa: BLE001 - the next run's clone drops it anyway
                pass

    def clone(self, name, dest):
        """A database `name` and a directory `dest` like the template."""
        self.server.drop_database(name)
        dsn = self.server.create_database(name, template=TEMPLATE_DB)
        shutil.copytree(self.root, dest, symlinks=True)
        # In-place imports: the links point into the template's inplace/: re-point them.
        old, new = str(self.root), str(dest)
        for folder, _, names in os.walk(dest):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    target = os.readlink(path)
                    if target.startswith(old + os.sep):
                        st = os.lstat(path)
                        os.unlink(path)
                        os.symlink(new + target[len(old):], path)
                        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns),
                                 follow_symlinks=False)
        return dsn

    def drop(self):
        self.drops.put(None)
        self.dropper.join(timeout=120)
        self.server.drop_database(TEMPLATE_DB)
        shutil.rmtree(self.root, ignore_errors=True)


# -- what OMERO references: the test's own SQL ----------------------------------------------

def truncate_app_tables():
    from django.apps import apps
    from django.db import connection

    tables = [m._meta.db_table for m in apps.get_app_config("storagemanager").get_models()]
    with connection.cursor() as cur:
        cur.execute("TRUNCATE {} CASCADE".format(", ".join('"%s"' % t for t in tables)))


def referenced_files(cur, paths):
    """{absolute path: set of holders} of every file OMERO references (thumbnails apart).

    A holder is a collection ("Project:1", "Screen:2") or, for an object in none, the
    object itself ("Image:7", "Dataset:6", "Plate:4"): what keeps the file online."""
    def rows(query):
        cur.execute(query)
        return cur.fetchall()

    def of_path(oid, path, name, repo):
        return paths.managed(path, name) if repo else paths.files(oid)

    image_holders = {}
    for (iid,) in rows("SELECT id FROM image"):
        image_holders[iid] = set()
    for iid, pid in rows("SELECT l.child, p.parent FROM datasetimagelink l"
                         " JOIN projectdatasetlink p ON p.child = l.parent"):
        image_holders[iid].add(f"Project:{pid}")
    for iid, sid in rows("SELECT s.image, l.parent FROM wellsample s JOIN well w"
                         " ON w.id = s.well JOIN screenplatelink l ON l.child = w.plate"):
        image_holders[iid].add(f"Screen:{sid}")
    for iid, holders in image_holders.items():
        if not holders:
            holders.add(f"Image:{iid}")
    dataset_holders, plate_holders = {}, {}
    for (did,) in rows("SELECT id FROM dataset"):
        dataset_holders[did] = set()
    for did, pid in rows("SELECT child, parent FROM projectdatasetlink"):
        dataset_holders[did].add(f"Project:{pid}")
    for (pid,) in rows("SELECT id FROM plate"):
        plate_holders[pid] = set()
    for pid, sid in rows("SELECT child, parent FROM screenplatelink"):
        plate_holders[pid].add(f"Screen:{sid}")
    for kind, table in (("Dataset", dataset_holders), ("Plate", plate_holders)):
        for oid, holders in table.items():
            if not holders:
                holders.add(f"{kind}:{oid}")
    well_plate = dict(rows("SELECT id, plate FROM well"))

    files = {}

    def add(path, holders):
        files.setdefault(path, set()).update(holders)

    for iid, oid, path, name, repo in rows(
            "SELECT i.id, o.id, o.path, o.name, o.repo FROM image i"
            " JOIN filesetentry e ON e.fileset = i.fileset"
            " JOIN originalfile o ON o.id = e.originalfile"):
        add(of_path(oid, path, name, repo), image_holders[iid])
    for iid, oid, path, name, repo in rows(
            "SELECT i.id, o.id, o.path, o.name, o.repo FROM image i"
            " JOIN filesetjoblink f ON f.parent = i.fileset"
            " JOIN joboriginalfilelink j ON j.parent = f.child"
            " JOIN originalfile o ON o.id = j.child"):
        add(of_path(oid, path, name, repo), image_holders[iid])
    for iid, pid in rows("SELECT image, id FROM pixels WHERE path IS NULL"):
        add(paths.pixels(pid), image_holders[iid])
    for iid, oid, path, name, repo in rows(
            "SELECT p.image, o.id, o.path, o.name, o.repo FROM pixelsoriginalfilemap m"
            " JOIN pixels p ON p.id = m.child JOIN originalfile o ON o.id = m.parent"):
        add(of_path(oid, path, name, repo), image_holders[iid])
    for kind in ("project", "dataset", "image", "screen", "plate", "well"):
        for parent, oid, path, name, repo in rows(
                f"SELECT l.parent, o.id, o.path, o.name, o.repo FROM {kind}annotationlink l"
                " JOIN annotation a ON a.id = l.child JOIN originalfile o ON o.id = a.file"
                " WHERE a.discriminator = '/type/OriginalFile/'"):
            if kind == "project":
                holders = {f"Project:{parent}"}
            elif kind == "screen":
                holders = {f"Screen:{parent}"}
            elif kind == "dataset":
                holders = dataset_holders[parent]
            elif kind == "plate":
                holders = plate_holders[parent]
            elif kind == "well":
                holders = plate_holders[well_plate[parent]]
            else:
                holders = image_holders[parent]
            add(of_path(oid, path, name, repo), holders)
    return files


def omero_view(cur, key):
    """What restore must give back in OMERO: name, owner, group, and the annotations
    (other than the app's state annotation) linked to the collection."""
    from omero_storagemanager.gateway import STATE_NS

    kind, oid = key.split(":")
    table = kind.lower()
    cur.execute(f"SELECT name, owner_id, group_id FROM {table} WHERE id = %s", [int(oid)])
    name, owner, group = cur.fetchone()
    cur.execute("SELECT a.id, a.discriminator, a.ns, a.file, a.textvalue"
                f" FROM {table}annotationlink l"
                " JOIN annotation a ON a.id = l.child WHERE l.parent = %s"
                " AND a.ns IS DISTINCT FROM %s ORDER BY a.id", [int(oid), STATE_NS])
    return {"name": name, "owner_id": owner, "group_id": group,
            "annotations": [list(r) for r in cur.fetchall()]}


# -- observing the disk -----------------------------------------------------------------------

class HashCache:
    """SHA-1 of files by (device, inode, size, mtime_ns, ctime_ns): each file read once
    while it does not change."""

    def __init__(self):
        self.known = {}

    def __call__(self, path, st=None):
        st = st or os.stat(path)
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if sig not in self.known:
            if len(self.known) > 50_000:
                self.known.clear()
            self.known[sig] = sha1_of(path)
        return self.known[sig]


class Seen:
    """One referenced path as found on disk: kind is file, inplace (the import's own
    link, intact), linked (a link into a location), badlink, absent or other; sha1 of
    what reading the path gives (None if it cannot be read)."""

    __slots__ = ("kind", "sha1", "st", "target")

    def __init__(self, kind, sha1=None, st=None, target=None):
        self.kind, self.sha1, self.st, self.target = kind, sha1, st, target

    @property
    def present(self):
        return self.kind in ("file", "inplace")

    def describe(self):
        if self.kind == "file":
            return f"a file of {self.st.st_size} bytes, sha1 {short(self.sha1)}"
        if self.kind in ("linked", "badlink", "inplace"):
            return (f"a link ({self.kind}) to {self.target}, reads "
                    + (f"sha1 {short(self.sha1)}" if self.sha1 else "nothing"))
        return self.kind


def _walk_tree(root, skip=()):
    """{relative path: signature} of everything below root (links not followed)."""
    out = {}
    root = str(root)
    if not os.path.lexists(root):
        return out
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            out[os.path.relpath(folder, root) + "/"] = f"unreadable: {exc.strerror}"
            continue
        for entry in entries:
            if entry.path in skip:
                continue
            rel = os.path.relpath(entry.path, root)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(entry.path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel + "/"] = ("dir",)
                stack.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_size, st.st_mtime_ns, sha1_of(entry.path))
            else:
                out[rel] = ("other", st.st_mode)
    return out


# -- errors the engine may raise ----------------------------------------------------------------

def app_error(exc):
    """An error of the app's own (a clear refusal), not a traceback of another kind."""
    module = type(exc).__module__ or ""
    return (module.startswith("omero_storagemanager") or module.startswith("backends")) \
        and not isinstance(exc, AssertionError)


def first_line(text, width=220):
    text = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return text if len(text) <= width else text[:width] + "..."


def call(fn, *args, **kwargs):
    """fn(*args, **kwargs) without the keyword arguments fn does not take (the engine's
    signatures change while issue 19 is worked on)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def _quiet(_):
    pass


class Violation(AssertionError):
    pass


# -- the world of one example -------------------------------------------------------------------

class World:
    """One example's facility (a clone of the template), locations, and the model."""

    def __init__(self, template, number, workdir):
        import psycopg2

        from omero_storagemanager.catalog.paths import RepositoryPaths
        from omero_storagemanager.engine.locations import add_location
        from omero_storagemanager.engine.sync import sync_collections
        from testbed.standin import StandInGateway

        self.template = template
        self.name = f"wm_{os.getpid()}_{number}"
        self.root = Path(workdir) / f"ex{number}"
        if self.root.exists():
            shutil.rmtree(self.root)
        self.dsn = template.clone(self.name, self.root)
        self.data_dir = self.root / "OMERO"
        self.away_dir = self.root / "OMERO.away"
        self.paths = RepositoryPaths(str(self.data_dir), str(self.data_dir / "ManagedRepository"))
        self.conn = psycopg2.connect(self.dsn)
        self.conn.set_session(readonly=True, autocommit=True)
        self.db = psycopg2.connect(self.dsn)  # the world's own changes to OMERO
        self.db.autocommit = True
        self.gateway = StandInGateway(self.dsn, 0)
        truncate_app_tables()
        sync_collections(self.conn)
        self.outside = self.root / "outside"
        self.outside.mkdir()
        for n in range(3):
            (self.outside / f"sentinel-{n}.dat").write_bytes(os.urandom(512 + n))
        self.locations, self.mounts = {}, {}
        for where, type_, name in (("hdd", "hdd", "Disk A"), ("link", "symlink", "Online B")):
            mount = self.root / f"mnt-{where}"
            mount.mkdir()
            self.locations[where] = add_location(name, type_, str(mount), GB,
                                                 current=where == "hdd")
            self.mounts[where] = mount
        self.hashes = HashCache()

    def location_root(self, where):
        return self.mounts[where] / str(self.locations[where].pk)

    def close(self):
        for conn in (self.conn, self.db):
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self.template.drops.put(self.name)  # dropped in the background
        shutil.rmtree(self.root, ignore_errors=True)

    def collection(self, key):
        from omero_storagemanager.catalog.collections import parse_key
        from omero_storagemanager.models import Collection

        kind, oid = parse_key(key)
        return Collection.objects.get(kind=kind, omero_id=oid)


class Model:
    """The test's expectations, kept from what the world did (never from the app's rows)."""

    def __init__(self, world):
        self.w = world
        with world.db.cursor() as cur:
            self.holders = referenced_files(cur, world.paths)
        self.relpath = {p: world.paths.relative(p) for p in self.holders}
        self.expected = {}  # path -> sha1 of the bytes the world last wrote there
        self.inplace = {}  # path -> link target (in-place import)
        for path in self.holders:
            if os.path.islink(path):
                self.inplace[path] = os.readlink(path)
            self.expected[path] = sha1_of(path)
        self.repo_away = False
        self.locations_away = set()
        self.symlinked = {}  # repository folder -> the folder outside it now holds
        self.foreign = {}  # path beside a primary file (a hard link) -> sha1
        self.before_purge = {}  # path -> (sha1, size, mode, mtime_ns) before its first purge
        # Paths the world replaced by a new file (a re-import: new inode) since the last
        # look at hard links: a new inode there is the world's doing, not a purge's.
        self.replaced = set()
        self.deleted = set()  # paths whose OMERO rows a delete removed: nobody's now
        self.omero_before = {}  # key -> omero_view before its first purge
        self.excused_absent = {}  # holder -> paths it gained while they were absent
        self.excused_present = {}  # purged holder -> paths it gained while present
        self.excused_nobag = set()  # archived with no file, then given files by the world
        self.excused_empty = set()  # purged, then emptied by the world
        self.outside_snapshot = self.snapshot_outside()
        self.moved = 0

    # -- where things really are ---------------------------------------------------------
    def real(self, path):
        """Where a primary path's bytes really are (the repository may be away)."""
        if self.repo_away:
            data = str(self.w.data_dir)
            if path == data or path.startswith(data + os.sep):
                return str(self.w.away_dir) + path[len(data):]
        return path

    def location_real(self, where):
        root = self.w.location_root(where)
        return Path(str(root) + ".away") if where in self.locations_away else root

    def location_roots(self):
        return [self.location_real(w) for w in LOCATIONS]

    def seen(self, path):
        rp = self.real(path)
        try:
            st = os.lstat(rp)
        except (FileNotFoundError, NotADirectoryError):
            return Seen("absent")
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(rp)
            try:
                sha1 = self.w.hashes(rp)
            except OSError:
                sha1 = None
            if path in self.inplace and target == self.inplace[path]:
                return Seen("inplace", sha1, st, target)
            mounts = [str(m) + os.sep for m in self.w.mounts.values()]
            kind = "linked" if any(target.startswith(m) for m in mounts) else "badlink"
            return Seen(kind, sha1, st, target)
        if stat.S_ISREG(st.st_mode):
            try:
                return Seen("file", self.w.hashes(rp, st), st)
            except OSError:
                return Seen("file", None, st)
        return Seen("other", None, st)

    def seen_all(self):
        return {p: self.seen(p) for p in self.holders}

    def bags(self):
        """relpath -> [(bag file, sha1)] of the payload files of every complete bag on
        every location (also one taken away: its bytes still exist)."""
        index = {}
        for root in self.location_roots():
            if not root.is_dir():
                continue
            for folder, dirs, names in os.walk(root, followlinks=True):
                dirs[:] = [d for d in dirs if not d.endswith(".partial")]
                if "bagit.txt" in names and "data" in dirs:
                    data = os.path.join(folder, "data")
                    for sub, _, files in os.walk(data, followlinks=True):
                        for name in files:
                            path = os.path.join(sub, name)
                            st = os.lstat(path)
                            if not stat.S_ISREG(st.st_mode):
                                continue
                            rel = os.path.relpath(path, data)
                            index.setdefault(rel, []).append((path, self.w.hashes(path, st)))
                    dirs[:] = [d for d in dirs if d != "data"]
        return index

    def bag_owners(self):
        """Collection keys that have a complete bag on some location (bag-info.txt)."""
        keys = set()
        for root in self.location_roots():
            if not root.is_dir():
                continue
            for folder, dirs, names in os.walk(root, followlinks=True):
                dirs[:] = [d for d in dirs if not d.endswith(".partial") and d != "data"]
                if "bag-info.txt" in names:
                    with open(os.path.join(folder, "bag-info.txt"), encoding="utf-8") as fh:
                        for line in fh:
                            if line.startswith("External-Identifier:"):
                                keys.add(line.split(":", 1)[1].strip())
        return keys

    def snapshot_outside(self):
        """Everything below the example's root but the repository and the locations'
        <mount>/<id> trees: the sentinel, in-place targets, folders moved out, a bare
        mount point while the repository or a location is away."""
        skip = {str(self.w.away_dir) if self.repo_away else str(self.w.data_dir)}
        skip |= {str(r) for r in self.location_roots()}
        return _walk_tree(self.w.root, skip)

    def refresh_foreign(self):
        for path in list(self.foreign):
            try:
                self.foreign[path] = sha1_of(self.real(path))
            except OSError:
                del self.foreign[path]

    def collections_files(self):
        out = {}
        for path, holders in self.holders.items():
            for h in holders:
                out.setdefault(h, set()).add(path)
        return out


# -- the state machine --------------------------------------------------------------------------

def _machine_class():
    """WorldMachine, built on first use (Hypothesis and Django are imported then)."""
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

    def counted(fn):
        """Count the rule steps (what Hypothesis's stateful_step_count counts)."""
        @functools.wraps(fn)
        def step(self, *args, **kwargs):
            self.env.rule_steps += 1
            return fn(self, *args, **kwargs)
        return step

    keys = st.sampled_from(KEYS)
    where = st.sampled_from(LOCATIONS)
    pick = st.integers(min_value=0, max_value=10**6)

    class WorldMachine(RuleBasedStateMachine):
        """See the module's docstring. env: an Env (template, workdir, options)."""

        env = None  # set by machine_factory

        def __init__(self):
            super().__init__()
            env = self.env
            env.examples += 1
            self.world = World(env.template, env.examples, env.workdir)
            self.model = Model(self.world)
            self.log = []
            self.kills = 0
            self.step_number = 0
            self.pending = []  # violations found during a step (by a race hook)

        def teardown(self):
            self.world.close()

        # -- bookkeeping -----------------------------------------------------------------
        def note(self, text):
            self.step_number += 1
            line = f"{self.step_number:3d}. {text}"
            self.log.append(line)
            self.env.steps += 1
            if self.env.verbose:
                print(line, flush=True)

        def fail(self, invariant, problems, tag):
            """Raise the violation, unless its tag is in env.ignore (then count it):
            problems: [text] all of `tag`, or [(tag, text)]."""
            problems = [p if isinstance(p, tuple) else (tag, p) for p in problems]
            counted = {}
            for t, _ in problems:
                counted[t] = counted.get(t, 0) + 1
            for t in counted:
                self.env.violations[t] = self.env.violations.get(t, 0) + 1
            problems = [f"[{t}] {text}" for t, text in problems if t not in self.env.ignore]
            if not problems:
                return
            shown = problems[:12] + ([f"... and {len(problems) - 12} more"]
                                     if len(problems) > 12 else [])
            self.env.record_failure(
                f"INVARIANT {invariant} broken after step {self.step_number} "
                f"({self.log[-1].strip() if self.log else 'setup'}):\n  " + "\n  ".join(shown)
                + "\nSteps of this example (names resolved):\n" + "\n".join(self.log))
            raise Violation(
                f"\nINVARIANT {invariant} broken after step {self.step_number} "
                f"({self.log[-1].strip() if self.log else 'setup'}):\n  "
                + "\n  ".join(shown)
                + "\nSteps of this example (names resolved):\n" + "\n".join(self.log))

        def outside_tag(self, rel):
            """2-mount-point (written into a bare mount point: the repository or a location
            away), 2-symlinked-repository-folder / 2-symlinked-location-folder (through a
            folder the world replaced by a symlink), 2-outside (anything else)."""
            m = self.model
            first = rel.split(os.sep, 1)[0]
            if first == self.world.data_dir.name or first.startswith("mnt-"):
                return "2-mount-point"
            if first == "outside" and rel.count(os.sep) >= 1:
                moved = str(self.world.outside / rel.split(os.sep)[1].rstrip("/"))
                for folder, target in m.symlinked.items():
                    if target == moved:
                        return ("2-symlinked-repository-folder"
                                if folder.startswith(str(self.world.data_dir) + os.sep)
                                else "2-symlinked-location-folder")
            return "2-outside"

        def race_note(self, hook):
            line = f"     (during it, the world: {hook.text})"
            self.log.append(line)
            if self.env.verbose:
                print(line, flush=True)

        def engine(self, label, fn):
            """Run one engine call; an app error is an allowed outcome."""
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001
                if not app_error(exc):
                    self.note(f"{label} -> TRACEBACK {type(exc).__name__}: {first_line(exc)}")
                    self.env.violations["E-traceback"] = self.env.violations.get(
                        "E-traceback", 0) + 1
                    if "E-traceback" in self.env.ignore:
                        return exc
                    self.env.record_failure(
                        f"INVARIANT E broken at step {self.step_number}: {label} raised "
                        f"{type(exc).__module__}.{type(exc).__name__}: {exc}\n"
                        + "\n".join(self.log))
                    where = "".join(traceback.format_exception(exc)[-6:])
                    raise Violation(
                        f"\nINVARIANT E broken at step {self.step_number}: {label} raised "
                        f"{type(exc).__module__}.{type(exc).__name__} (not one of the app's "
                        f"errors): {exc}\n{where}Steps of this example:\n" + "\n".join(self.log)
                    ) from exc
                text = first_line(exc)
                self.note(f"{label} -> refused: {type(exc).__name__}: {text}")
                self.env.outcomes[type(exc).__name__] = self.env.outcomes.get(
                    type(exc).__name__, 0) + 1
                words = str(exc).split(": ")
                if len(words) > 2 and words[0] == words[1]:
                    self.fail("E", [f"{label}: the message repeats its prefix: {text}"],
                              "E-prefix")
                return exc
            self.env.outcomes["ok"] = self.env.outcomes.get("ok", 0) + 1
            self.note(f"{label} -> {self.summary(result)}")
            return result

        @staticmethod
        def summary(result):
            if result is None:
                return "done"
            for attrs in (("state", "files", "bytes"), ("restored", "bytes"),
                          ("freed", "blocked", "already"), ("audited", "failed")):
                if all(hasattr(result, a) for a in attrs):
                    parts = []
                    for a in attrs:
                        v = getattr(result, a)
                        parts.append(f"{a} {len(v) if isinstance(v, list) else v}")
                    return ", ".join(parts)
            if isinstance(result, list):
                return f"{len(result)} item(s)"
            return type(result).__name__

        def collection(self, key):
            return self.world.collection(key)

        # -- the checks ----------------------------------------------------------------------
        def check(self, *, states=True):
            m, w = self.model, self.world
            problems = list(self.pending)
            self.pending.clear()
            if problems:
                self.fail("2 (outside untouched, during the step)", problems, None)
            seen = m.seen_all()
            # 4. a file OMERO deleted is never written back (by a restore)
            back = sorted(m.relpath[p] for p in m.deleted if os.path.lexists(m.real(p)))
            if back:
                self.fail("4 (a restore gives back what OMERO has, nothing it deleted)",
                          [f"{rel}: deleted in OMERO, then written back" for rel in back],
                          "4-resurrected")
            # 1. bytes
            bags = None
            lost = []
            for path, want in m.expected.items():
                got = seen[path]
                if got.sha1 == want:
                    continue
                if bags is None:
                    bags = m.bags()
                rel = m.relpath[path]
                copies = bags.get(rel, [])
                if any(sha1 == want for _, sha1 in copies):
                    continue
                where = "; ".join(f"{os.path.relpath(p, w.root)}: sha1 {short(s)}"
                                  for p, s in copies) or "no bag file"
                lost.append(f"{rel}: the world last wrote sha1 {short(want)}; primary is "
                            f"{got.describe()}; copies: {where}")
            if lost:
                self.fail("1 (every referenced byte exists on primary or in a bag file)", lost,
                          "1-lost")
            # 2. outside
            now = m.snapshot_outside()
            if now != m.outside_snapshot:
                changed = []
                for rel in sorted(set(now) | set(m.outside_snapshot)):
                    a, b = m.outside_snapshot.get(rel), now.get(rel)
                    if a != b:
                        what = ("created" if a is None else "removed" if b is None
                                else "changed")
                        changed.append((self.outside_tag(rel), f"{rel}: {what} ({a} -> {b})"))
                self.fail("2 (nothing outside the repository and locations touched)", changed,
                          None)
            touched = []
            for path, want in m.foreign.items():
                try:
                    got = sha1_of(m.real(path))
                except OSError as exc:
                    got = f"unreadable ({exc.strerror})"
                if got != want:
                    touched.append(("2-hardlink-name",
                                    f"{os.path.relpath(path, w.root)} (a hard link the world "
                                    f"made beside a primary file): sha1 {short(want)} -> "
                                    f"{short(got)}"))
            for path, target in m.inplace.items():
                if seen[path].kind != "inplace":
                    touched.append(("2-inplace-link",
                                    f"{m.relpath[path]}: in-place import link to {target} is "
                                    f"now {seen[path].describe()}"))
            if touched:
                self.fail("2 (nothing outside the repository and locations touched)", touched,
                          None)
            if states:
                self.check_states(seen)

        def check_states(self, seen):
            from omero_storagemanager.models import Collection

            m = self.model
            files = m.collections_files()
            states = {c.key: c.state for c in Collection.objects.filter(gone=False)}
            bad = []
            owners = None
            for key in KEYS:
                state = states.get(key)
                mine = files.get(key, set())
                if state in (Collection.ONLINE, Collection.ARCHIVED):
                    for p in sorted(mine):
                        if seen[p].present:
                            m.excused_absent.get(key, set()).discard(p)
                        elif p not in m.excused_absent.get(key, ()):
                            others = ", ".join(f"{h} {states.get(h, 'orphan')}"
                                               for h in sorted(m.holders[p]) if h != key)
                            bad.append(("3-online-absent",
                                        f"{key} is {state} but {m.relpath[p]} is "
                                        f"{seen[p].describe()} (other holders: "
                                        f"{others or 'none'})"))
                if state == Collection.ARCHIVED:
                    if owners is None:
                        owners = m.bag_owners()
                    if key in owners:
                        m.excused_nobag.discard(key)
                    elif mine and key not in m.excused_nobag:
                        bad.append(("3-archived-nobag", f"{key} is archived but no complete "
                                    "bag of it is on any location"))
                if state != Collection.PURGED:
                    m.excused_empty.discard(key)
                if state == Collection.PURGED:
                    if not mine and key not in m.excused_empty:
                        bad.append(("3-purged-empty", f"{key} is purged but holds no file "
                                    "(an empty collection cannot be purged)"))
                    for p in sorted(mine):
                        if not seen[p].present:
                            m.excused_present.get(key, set()).discard(p)
                        elif p not in m.excused_present.get(key, ()):
                            bad.append(("3-purged-present", f"{key} is purged but "
                                        f"{m.relpath[p]} is {seen[p].describe()}"))
            for holder, mine in files.items():
                if holder.split(":")[0] in ("Project", "Screen"):
                    continue
                for p in sorted(mine):
                    if seen[p].present:
                        m.excused_absent.get(holder, set()).discard(p)
                    elif p not in m.excused_absent.get(holder, ()):
                        bad.append(("3-orphan-holder", f"{m.relpath[p]} is "
                                    f"{seen[p].describe()} but {holder} (in no Project/Screen: "
                                    "online) holds it"))
            if bad:
                self.fail("3 (every collection's state agrees with its files)", bad, None)

        # -- world changes ------------------------------------------------------------------
        def world_change(self, label, action):
            """Run a change of the world, then move the model along with it."""
            m = self.model
            before = {h: set(ps) for h, ps in m.collections_files().items()}
            # Anything the app changed outside before this (mid-step hook) is its doing.
            now = m.snapshot_outside()
            if now != m.outside_snapshot:
                changed = sorted(k for k in set(now) | set(m.outside_snapshot)
                                 if now.get(k) != m.outside_snapshot.get(k))
                self.pending.append((self.outside_tag(changed[0]),
                                     f"outside changed before '{label}' in mid-step: "
                                     + ", ".join(changed)[:400]))
            text = action()
            if text is None:
                return None
            with self.world.db.cursor() as cur:
                m.holders = referenced_files(cur, self.world.paths)
            after = m.collections_files()
            from omero_storagemanager.models import Collection

            states = {c.key: c.state for c in Collection.objects.filter(gone=False)}
            for holder in before:
                if before[holder] and not after.get(holder) and \
                        states.get(holder) == Collection.PURGED:
                    m.excused_empty.add(holder)
            for holder, paths in after.items():
                gained = paths - before.get(holder, set())
                if gained and not before.get(holder) and states.get(holder) == Collection.ARCHIVED:
                    m.excused_nobag.add(holder)
                for p in gained:
                    present = m.seen(p).present
                    if not present:
                        m.excused_absent.setdefault(holder, set()).add(p)
                    elif states.get(holder) in (Collection.PURGED,
                                                Collection.PARTIALLY_PURGED):
                        m.excused_present.setdefault(holder, set()).add(p)
            m.outside_snapshot = m.snapshot_outside()
            m.refresh_foreign()
            return text

        def world_rule(self, label, action):
            text = self.world_change(label, action)
            self.note(f"world: {label}: {text if text is not None else 'nothing to do'}")
            self.check()

        def insert_link(self, table, parent, child):
            with self.world.db.cursor() as cur:
                parent_table = {"projectdatasetlink": "project", "screenplatelink": "screen",
                                "datasetimagelink": "dataset"}[table]
                cur.execute(f"SELECT owner_id, group_id, permissions FROM {parent_table}"
                            " WHERE id = %s", [parent])
                owner, group, perms = cur.fetchone()
                cur.execute(f"SELECT 1 FROM {table} WHERE parent = %s AND child = %s",
                            [parent, child])
                if cur.fetchone():
                    return False
                cur.execute("SELECT max(id) FROM event")
                event = cur.fetchone()[0]
                cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")
                link_id = cur.fetchone()[0]
                cur.execute(f"INSERT INTO {table} (id, permissions, version, parent, child,"
                            " creation_id, update_id, owner_id, group_id)"
                            " VALUES (%s, %s, 0, %s, %s, %s, %s, %s, %s)",
                            [link_id, perms, parent, child, event, event, owner, group])
            return True

        def present_files(self, among=None):
            m = self.model
            if m.repo_away:
                return []
            return sorted(p for p in (m.holders if among is None else among)
                          if p not in m.inplace and m.seen(p).kind == "file")

        def change_file(self, path, how, rng):
            """Re-import (new bytes, same path; OMERO's record follows), rewrite in place
            (OMERO's record does not; optionally keeping the mtime), truncate."""
            m = self.model
            st = os.stat(path)
            rel = m.relpath[path]
            if how == "reimport":
                data = rng.randbytes(max(1, st.st_size + rng.randint(-50, 50)))
                tmp = path + ".reimport"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
                when = st.st_mtime_ns + rng.randrange(10**9, 10**12)
                os.utime(tmp, ns=(when, when))
                os.replace(tmp, path)
                m.replaced.add(path)
                self.reimport_record(path, data)
            elif how in ("rewrite", "rewrite keeping mtime"):
                if st.st_size == 0:
                    with open(path, "ab") as fh:
                        fh.write(b"\x01")
                else:
                    offset = rng.randrange(st.st_size)
                    with open(path, "r+b") as fh:
                        fh.seek(offset)
                        old = fh.read(1)
                        fh.seek(offset)
                        fh.write(bytes([old[0] ^ 0xA5]))
                if how == "rewrite keeping mtime":
                    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:  # truncate
                with open(path, "r+b") as fh:
                    fh.truncate(st.st_size // 2)
            m.expected[path] = sha1_of(path)
            m.before_purge.pop(path, None)
            return (f"{how} {rel} (now sha1 {short(m.expected[path])}, "
                    f"{os.path.getsize(path)} bytes)")

        def reimport_record(self, path, data):
            """OMERO's originalfile row follows a re-import: size and checksum."""
            m = self.model
            rel = m.relpath[path]
            folder, name = os.path.split(path)
            with self.world.db.cursor() as cur:
                if rel.startswith("ManagedRepository/"):
                    managed = self.world.paths.managed_dir + os.sep
                    opath = folder[len(managed):] + "/"
                    cur.execute("SELECT o.id, c.value FROM originalfile o LEFT JOIN"
                                " checksumalgorithm c ON c.id = o.hasher WHERE o.path = %s"
                                " AND o.name = %s AND o.repo IS NOT NULL", [opath, name])
                elif rel.startswith("Files/"):
                    cur.execute("SELECT o.id, c.value FROM originalfile o LEFT JOIN"
                                " checksumalgorithm c ON c.id = o.hasher WHERE o.id = %s",
                                [int(name)])
                else:
                    return
                for oid, algorithm in cur.fetchall():
                    digest = {"SHA1-160": hashlib.sha1, "MD5-128": hashlib.md5}.get(algorithm)
                    cur.execute("UPDATE originalfile SET size = %s, hash = %s WHERE id = %s",
                                [len(data), digest(data).hexdigest() if digest else None, oid])

        def damage_bag_file(self, candidates, rng, how):
            """Delete, flip a byte of, or truncate a payload file of a bag, only where its
            bytes are kept elsewhere too (the world never destroys the last copy)."""
            m = self.model
            bags = m.bags()
            seen = m.seen_all()
            by_rel = {m.relpath[p]: p for p in m.holders}
            safe = []
            for rel, copies in sorted(bags.items()):
                if candidates is not None and rel not in candidates:
                    continue
                path = by_rel.get(rel)
                for bag_file, sha1 in copies:
                    if not any(str(bag_file).startswith(str(m.location_real(w)) + os.sep)
                               for w in LOCATIONS if w not in m.locations_away):
                        continue
                    if path is None or sha1 != m.expected[path]:
                        safe.append(bag_file)
                        continue
                    elsewhere = seen[path].sha1 == sha1 and seen[path].kind == "file"
                    elsewhere = elsewhere or any(s == sha1 for b, s in copies if b != bag_file)
                    if elsewhere:
                        safe.append(bag_file)
            if not safe:
                return None
            safe.sort()
            victim = safe[rng.randrange(len(safe))]
            if how == "delete":
                os.unlink(victim)
            elif how == "truncate":
                with open(victim, "r+b") as fh:
                    fh.truncate(os.path.getsize(victim) // 2)
            else:
                size = os.path.getsize(victim)
                if size == 0:
                    with open(victim, "ab") as fh:
                        fh.write(b"\x01")
                else:
                    with open(victim, "r+b") as fh:
                        offset = rng.randrange(size)
                        fh.seek(offset)
                        old = fh.read(1)
                        fh.seek(offset)
                        fh.write(bytes([old[0] ^ 0x01]))
            return f"{how} bag file {os.path.relpath(victim, self.world.root)}"

        def record_before_purge(self, keys):
            """What a restore must give back: each file's bytes, size, mode, mtime (ns),
            and the collection's OMERO view, as they were before its first purge."""
            m = self.model
            from omero_storagemanager.models import Collection

            files = m.collections_files()
            for key in keys:
                c = self.collection(key)
                if c.state in (Collection.ONLINE, Collection.ARCHIVED) and \
                        key not in m.omero_before:
                    with self.world.db.cursor() as cur:
                        m.omero_before[key] = omero_view(cur, key)
                for p in files.get(key, ()):
                    got = m.seen(p)
                    if got.kind == "file" and got.sha1 == m.expected[p] and p not in m.before_purge:
                        m.before_purge[p] = (got.sha1, got.st.st_size,
                                             stat.S_IMODE(got.st.st_mode), got.st.st_mtime_ns)

        def hardlinked(self, keys):
            self.model.replaced.clear()
            files = self.model.collections_files()
            out = {}
            for key in keys:
                for p in files.get(key, ()):
                    got = self.model.seen(p)
                    if got.kind == "file" and got.st.st_nlink > 1:
                        out[p] = got.st.st_ino
            return out

        def check_hardlinks_kept(self, linked):
            bad = []
            for p, ino in linked.items():
                got = self.model.seen(p)
                if (p in self.model.replaced and got.kind == "file"
                        and got.sha1 == self.model.expected[p]):
                    continue  # re-imported during the step: the new file is there, kept
                if got.kind != "file" or got.st.st_ino != ino:
                    bad.append(f"{self.model.relpath[p]} had more than one link (nlink > 1) "
                           f"and was purged anyway: now {got.describe()}")
            if bad:
                self.fail("3 (a hard-linked primary file is kept)", bad, "3-hardlink-purged")

        def check_restored(self, key):
            """4: after a restore that completed."""
            from omero_storagemanager.models import Collection

            m = self.model
            c = self.collection(key)
            if c.state != Collection.ARCHIVED:
                return
            bad = []
            for p in sorted(m.collections_files().get(key, ())):
                want = m.before_purge.get(p)
                got = m.seen(p)
                if want is None or not got.present or got.kind != "file":
                    continue
                now = (got.sha1, got.st.st_size, stat.S_IMODE(got.st.st_mode), got.st.st_mtime_ns)
                if now != want:
                    names = ("sha1", "size", "mode", "mtime_ns")
                    diffs = ", ".join(f"{n} {a} -> {b}" for n, a, b in zip(names, want, now)
                                      if a != b)
                    bad.append(("4-files", f"{m.relpath[p]}: {diffs}"))
            if key in m.omero_before:
                with self.world.db.cursor() as cur:
                    view = omero_view(cur, key)
                if view != m.omero_before[key]:
                    bad.append(("4-omero", f"{key} in OMERO: {m.omero_before[key]} -> {view}"))
                state = self.world.gateway.get_state(*key.lower().split(":"))
                if state and dict(state).get("state") != Collection.ARCHIVED:
                    bad.append(("4-omero", f"{key}: the state annotation says "
                                               f"{dict(state).get('state')}"))
            if bad:
                self.fail("4 (a restore gives back identical bytes, sizes, modes, mtimes "
                          "(ns) and OMERO names/owners/annotations)", bad, None)

        # -- engine rules -------------------------------------------------------------------
        def do_archive(self, key, where, progress=None):
            from omero_storagemanager.engine.archive import archive_collection

            w = self.world
            return self.engine(f"archive {key} to {where}", lambda: call(
                archive_collection, w.conn, w.paths, self.collection(key), w.locations[where],
                workers=1, log=_quiet, progress=progress))

        def do_purge(self, key, along=(), progress=None):
            from omero_storagemanager.engine.purge import purge_collection

            w = self.world
            label = f"purge {key}" + (f" along with {', '.join(along)}" if along else "")
            return self.engine(label, lambda: call(
                purge_collection, w.conn, w.paths, self.collection(key), w.gateway,
                copies_required=1, along_with=set(along), rename=True,
                archive_user_id=ARCHIVE_USER, archive_group_id=ARCHIVE_GROUP, log=_quiet,
                progress=progress))

        def do_restore(self, key, progress=None):
            from omero_storagemanager.engine.restore import restore_collection

            w = self.world
            return self.engine(f"restore {key}", lambda: call(
                restore_collection, self.collection(key), w.gateway, log=_quiet, workers=1,
                progress=progress, paths=w.paths, conn=w.conn))

        @initialize(archived=st.sets(keys), where=where)
        @counted
        def archive_first(self, archived, where):
            """Start where things happen: collections archived (none, when shrunk)."""
            for key in sorted(archived):
                self.do_archive(key, where)
            self.check()

        @rule(key=keys, where=where)
        @counted
        def archive(self, key, where):
            self.do_archive(key, where)
            self.check()

        @rule(key=keys)
        @counted
        def purge(self, key):
            self.record_before_purge([key])
            linked = self.hardlinked([key])
            self.do_purge(key)
            self.check()
            self.check_hardlinks_kept(linked)

        @rule(keys=st.lists(keys, min_size=2, max_size=3, unique=True))
        @counted
        def joint_purge(self, keys):
            """Several collections in one job, as tasks/handlers.py purge() runs them."""
            self.record_before_purge(keys)
            linked = self.hardlinked(keys)
            for key in keys:
                if isinstance(self.do_purge(key, along=keys), Exception):
                    break  # the job stops at its first error
            self.check()
            self.check_hardlinks_kept(linked)

        @rule(key=keys)
        @counted
        def restore(self, key):
            result = self.do_restore(key)
            self.check()
            if not isinstance(result, Exception):
                self.check_restored(key)

        @rule(key=st.one_of(st.none(), keys), mode=st.sampled_from(["catalog", "stat", "verify"]))
        @counted
        def scan(self, key, mode):
            from omero_storagemanager.catalog.collections import parse_key
            from omero_storagemanager.engine.scan import scan

            w = self.world
            targets = None if key is None else [parse_key(key)]
            self.engine(f"scan {key or 'all'} ({mode})", lambda: call(
                scan, w.conn, w.paths, mode, targets, workers=1))
            self.check()

        @rule(key=keys)
        @counted
        def preview(self, key):
            """plan_purge, the dry run: must change nothing at all."""
            from omero_storagemanager.engine.purge import plan_purge

            w = self.world
            before = _walk_tree(w.root)
            self.engine(f"dry-run purge of {key}", lambda: call(
                plan_purge, w.conn, w.paths, self.collection(key), 1))
            after = _walk_tree(w.root)
            if before != after:
                self.fail("2 (a dry run changes nothing)",
                          [f"{k}: {before.get(k)} -> {after.get(k)}"
                           for k in sorted(set(before) | set(after))
                           if before.get(k) != after.get(k)], "2-dry-run")
            self.check()

        @rule(where=where)
        @counted
        def audit(self, where):
            from omero_storagemanager.engine.locations import audit

            self.engine(f"audit {where}", lambda: audit(self.world.locations[where]))
            self.check()

        @rule(where=where)
        @counted
        def rescan(self, where):
            from omero_storagemanager.engine.locations import rescan

            self.engine(f"rescan {where}", lambda: rescan(self.world.locations[where]))
            self.check()

        def race_action(self, key, race, pick):
            """A change of the world aimed at `key`'s files, to run inside a step."""
            rng = random.Random(pick)
            mine = sorted(self.model.collections_files().get(key, ()))

            def action():
                if race in ("reimport", "rewrite", "rewrite keeping mtime", "truncate"):
                    files = self.present_files(mine)
                    if not files:
                        return None
                    return self.change_file(files[rng.randrange(len(files))], race, rng)
                if race == "link":
                    return self.link_into_other(key, rng)
                if race == "delete fileset":
                    return self.act_delete_fileset(pick)
                if race == "symlink folder":
                    return self.act_symlink_folder(pick, mine)
                if race == "repository away":
                    return self.act_repository_away()
                if race == "location away":
                    return self.act_location_away(LOCATIONS[pick % len(LOCATIONS)])
                rels = {self.model.relpath[p] for p in mine}
                return self.damage_bag_file(rels, rng, rng.choice(["delete", "flip"]))
            return action

        @rule(key=keys, race=st.sampled_from(["reimport", "rewrite keeping mtime", "link",
                                              "damage bag", "symlink folder",
                                              "repository away", "delete fileset"]),
              pick=pick)
        @counted
        def purge_with_race(self, key, race, pick):
            """The world changes inside a purge, after its plan, before its deletions."""
            hook = RaceHook(self, f"{race} in {key}", self.race_action(key, race, pick))
            self.record_before_purge([key])
            linked = self.hardlinked([key])
            self.do_purge(key, progress=hook)
            self.race_note(hook)
            self.check()
            self.check_hardlinks_kept(linked)

        @rule(key=keys, race=st.sampled_from(["symlink folder", "repository away",
                                              "location away", "link"]),
              pick=pick)
        @counted
        def restore_with_race(self, key, race, pick):
            """The world changes inside a restore, once it knows what to bring back."""
            hook = RaceHook(self, f"{race} in {key}", self.race_action(key, race, pick))
            result = self.do_restore(key, progress=hook)
            self.race_note(hook)
            self.check()
            if not isinstance(result, Exception):
                self.check_restored(key)

        @rule(key=keys, where=where,
              race=st.sampled_from(["rewrite", "rewrite keeping mtime", "truncate", "reimport",
                                    "location away", "link"]),
              pick=pick)
        @counted
        def archive_with_race(self, key, where, race, pick):
            """The world changes inside an archive, after its plan, before its copies."""
            hook = RaceHook(self, f"{race} in {key}", self.race_action(key, race, pick))
            self.do_archive(key, where, progress=hook)
            self.race_note(hook)
            self.check()

        def link_into_other(self, key, rng):
            """Link one Dataset/Plate of `key` into another Project/Screen."""
            kind, oid = key.split(":")
            with self.world.db.cursor() as cur:
                if kind == "Project":
                    cur.execute("SELECT child FROM projectdatasetlink WHERE parent = %s"
                                " ORDER BY child", [int(oid)])
                    table, others = "projectdatasetlink", [k for k in PROJECTS if k != key]
                else:
                    cur.execute("SELECT child FROM screenplatelink WHERE parent = %s"
                                " ORDER BY child", [int(oid)])
                    table, others = "screenplatelink", [k for k in SCREENS if k != key]
                children = [r[0] for r in cur.fetchall()]
            if not children:
                return None
            child = children[rng.randrange(len(children))]
            other = others[rng.randrange(len(others))]
            if not self.insert_link(table, int(other.split(":")[1]), child):
                return None
            what = "Dataset" if kind == "Project" else "Plate"
            return f"linked {what}:{child} into {other}"

        @precondition(lambda self: self.kills < self.env.max_kills)
        @rule(op=st.sampled_from(["purge", "restore", "archive"]), key=keys,
              at=st.integers(min_value=1, max_value=60))
        @counted
        def kill_mid_step(self, op, key, at):
            """The step in a subprocess, SIGKILLed at its (at+1)//2-th file operation
            (unlink, rename, replace, symlink, mkdir, rmdir, fsync: before it when `at` is
            odd, after it when even), a point that replays the same; then run again."""
            self.kills += 1
            if op == "purge":
                self.record_before_purge([key])
            w = self.world
            spec = {"op": op, "key": key, "dsn": w.dsn, "data_dir": str(w.data_dir),
                    "managed_dir": w.paths.managed_dir,
                    "location": w.locations["hdd"].pk, "at": at}
            outcome = run_killed(spec)
            self.note(f"{op} {key} in a subprocess, SIGKILL at file operation "
                      f"{(at + 1) // 2} ({'before' if at % 2 else 'after'} it): {outcome}")
            self.check(states=False)  # a killed step may leave a state to complete
            for attempt in range(20):
                if op == "purge":
                    result = self.do_purge(key)
                elif op == "restore":
                    result = self.do_restore(key)
                else:
                    result = self.do_archive(key, "hdd")
                if type(result).__name__ != "CollectionBusy":
                    break
                time.sleep(0.2)  # the killed process's session is still going away
            self.check()
            if op == "restore" and not isinstance(result, Exception):
                self.check_restored(key)

        # -- world rules ------------------------------------------------------------------------
        @rule(project=st.sampled_from(PROJECTS), dataset=st.sampled_from(DATASETS))
        @counted
        def link_dataset(self, project, dataset):
            def action():
                if self.insert_link("projectdatasetlink", int(project.split(":")[1]),
                                    int(dataset.split(":")[1])):
                    return f"{dataset} linked into {project}"
                return None
            self.world_rule("link", action)

        @rule(screen=st.sampled_from(SCREENS), plate=st.sampled_from(PLATES))
        @counted
        def link_plate(self, screen, plate):
            def action():
                if self.insert_link("screenplatelink", int(screen.split(":")[1]),
                                    int(plate.split(":")[1])):
                    return f"{plate} linked into {screen}"
                return None
            self.world_rule("link", action)

        @rule(dataset=st.sampled_from(DATASETS), pick=pick)
        @counted
        def link_image(self, dataset, pick):
            def action():
                with self.world.db.cursor() as cur:
                    cur.execute("SELECT id FROM image i WHERE NOT EXISTS (SELECT 1 FROM"
                                " wellsample s WHERE s.image = i.id) ORDER BY id")
                    images = [r[0] for r in cur.fetchall()]
                image = images[pick % len(images)]
                if self.insert_link("datasetimagelink", int(dataset.split(":")[1]), image):
                    return f"Image:{image} linked into {dataset}"
                return None
            self.world_rule("link", action)

        @rule(pick=pick)
        @counted
        def unlink(self, pick):
            def action():
                with self.world.db.cursor() as cur:
                    links = []
                    for table, parent, child in (("projectdatasetlink", "Project", "Dataset"),
                                                 ("screenplatelink", "Screen", "Plate"),
                                                 ("datasetimagelink", "Dataset", "Image")):
                        cur.execute(f"SELECT id, parent, child FROM {table} ORDER BY id")
                        links += [(table, i, f"{child}:{c} from {parent}:{p}")
                                  for i, p, c in cur.fetchall()]
                    if not links:
                        return None
                    table, link_id, text = links[pick % len(links)]
                    cur.execute(f"DELETE FROM {table} WHERE id = %s", [link_id])
                return f"unlinked {text}"
            self.world_rule("unlink", action)

        @rule(pick=pick)
        @counted
        def delete_image_links(self, pick):
            """An Image taken out of every Dataset (it stays in OMERO, an orphan)."""
            def action():
                with self.world.db.cursor() as cur:
                    cur.execute("SELECT DISTINCT child FROM datasetimagelink ORDER BY child")
                    images = [r[0] for r in cur.fetchall()]
                    if not images:
                        return None
                    image = images[pick % len(images)]
                    cur.execute("DELETE FROM datasetimagelink WHERE child = %s", [image])
                return f"Image:{image} taken out of every Dataset"
            self.world_rule("delete an Image's links", action)

        @rule(pick=pick)
        @counted
        def delete_fileset(self, pick):
            """A user deletes an imported fileset outright (all its Images, as OMERO
            requires): OMERO removes its rows and its files in the repository, a file or
            the link a symlink-location purge left. Its bytes are then referenced by
            nobody; what the app must not do is fail, or bring them back as if OMERO
            still wanted them."""
            self.world_rule("delete a fileset", lambda: self.act_delete_fileset(pick))

        def act_delete_fileset(self, pick):
            from testbed.omero_delete import delete_fileset

            m = self.model
            if m.repo_away:
                return None  # OMERO cannot delete files it cannot reach
            with self.world.db.cursor() as cur:
                cur.execute("SELECT id FROM fileset ORDER BY id")
                filesets = [r[0] for r in cur.fetchall()]
                if not filesets:
                    return None
                fs = filesets[pick % len(filesets)]
                before = set(m.holders)
                images = delete_fileset(cur, fs)
                after = set(referenced_files(cur, self.world.paths))
            gone = sorted(before - after)
            for path in gone:  # an in-place import: the link goes, not its target
                try:
                    os.unlink(m.real(path))
                except FileNotFoundError:
                    pass
            for path in gone:  # referenced by nobody: no longer expected anywhere
                for known in (m.expected, m.before_purge, m.inplace):
                    known.pop(path, None)
                m.deleted.add(path)
            return (f"Fileset:{fs} deleted with {len(images)} Image(s): "
                    f"{len(gone)} file(s) no longer referenced")

        @rule(pick=pick, how=st.sampled_from(["reimport", "rewrite", "rewrite keeping mtime",
                                              "truncate"]))
        @counted
        def change_primary(self, pick, how):
            def action():
                files = self.present_files()
                if not files:
                    return None
                return self.change_file(files[pick % len(files)], how, random.Random(pick))
            self.world_rule("primary file", action)

        @rule(pick=pick)
        @counted
        def hardlink(self, pick):
            def action():
                files = [p for p in self.present_files()
                         if p + ".hardlink" not in self.model.foreign]
                if not files:
                    return None
                path = files[pick % len(files)]
                os.link(path, path + ".hardlink")
                self.model.foreign[path + ".hardlink"] = self.model.expected[path]
                return f"hard link {self.model.relpath[path]}.hardlink beside it"
            self.world_rule("hard link", action)

        @rule(pick=pick, area=st.sampled_from(["repository", "repository", *LOCATIONS]))
        @counted
        def symlink_folder(self, pick, area="repository"):
            """A folder of the repository (or of a location) moved outside it and replaced
            by a symlink."""
            if area == "repository":
                self.world_rule("symlinked folder", lambda: self.act_symlink_folder(pick))
            else:
                self.world_rule("symlinked folder",
                                lambda: self.act_symlink_location_folder(area, pick))

        def act_symlink_location_folder(self, where, pick):
            m, w = self.model, self.world
            if where in m.locations_away:
                return None
            root = str(w.location_root(where))
            folders = []
            for folder, dirs, _ in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.endswith(".partial"))
                folders += [os.path.join(folder, d) for d in dirs]
            moved = self._move_out_leaving_symlink(folders, pick)
            if moved is None:
                return None
            folder, target = moved
            return (f"{os.path.relpath(folder, w.root)} (location {where}) moved to "
                    f"{os.path.relpath(target, w.root)}, a symlink in its place")

        def _move_out_leaving_symlink(self, folders, pick):
            """Move one of `folders` (none inside, around or at a folder moved already)
            outside the roots and leave a symlink to it in its place: (folder, target)."""
            m, w = self.model, self.world
            folders = sorted(f for f in folders
                             if not any(f == s or f.startswith(s + os.sep) or
                                        s.startswith(f + os.sep) for s in m.symlinked)
                             and os.path.isdir(f) and not os.path.islink(f))
            if not folders:
                return None
            folder = folders[pick % len(folders)]
            m.moved += 1
            target = w.outside / f"moved-{m.moved}"
            os.rename(folder, target)
            os.symlink(target, folder)
            m.symlinked[folder] = str(target)
            return folder, target

        def act_symlink_folder(self, pick, among=None):
            m, w = self.model, self.world
            if m.repo_away:
                return None
            folders = set()
            for p in (m.holders if among is None else among):
                if p in m.inplace:
                    continue
                folder = os.path.dirname(p)
                while folder not in (str(w.data_dir), w.paths.managed_dir):
                    folders.add(folder)
                    folder = os.path.dirname(folder)
            moved = self._move_out_leaving_symlink(folders, pick)
            if moved is None:
                return None
            folder, target = moved
            return (f"{os.path.relpath(folder, w.data_dir)} moved to "
                    f"{os.path.relpath(target, w.root)}, a symlink in its place")

        @precondition(lambda self: self.model.symlinked and not self.model.repo_away)
        @rule(pick=pick)
        @counted
        def unsymlink_folder(self, pick):
            m, w = self.model, self.world

            def action():
                folder = sorted(m.symlinked)[pick % len(m.symlinked)]
                if not os.path.lexists(os.path.dirname(folder)):
                    return None  # its location is away (the link went with it)
                target = m.symlinked.pop(folder)
                if not os.path.islink(folder):
                    return f"{folder} is no longer a symlink: left as it is"
                os.unlink(folder)
                os.rename(target, folder)
                return f"{os.path.relpath(folder, w.root)} moved back in place"
            self.world_rule("symlinked folder", action)

        @rule(pick=pick, how=st.sampled_from(["delete", "flip", "truncate"]))
        @counted
        def damage_bag(self, pick, how):
            self.world_rule("bag file", lambda: self.damage_bag_file(
                None, random.Random(pick), how))

        @precondition(lambda self: len(self.model.locations_away) < len(LOCATIONS))
        @rule(where=where)
        @counted
        def location_away(self, where):
            self.world_rule("location", lambda: self.act_location_away(where))

        def act_location_away(self, where):
            m = self.model
            if where in m.locations_away:
                return None
            root = self.world.location_root(where)
            os.rename(root, str(root) + ".away")
            m.locations_away.add(where)
            return f"location {where} taken away ({root.name} renamed)"

        @precondition(lambda self: self.model.locations_away)
        @rule(where=where)
        @counted
        def location_back(self, where):
            m = self.model

            def action():
                if where not in m.locations_away:
                    return None
                root = self.world.location_root(where)
                m.locations_away.discard(where)
                os.rename(str(root) + ".away", root)
                return f"location {where} back"
            self.world_rule("location", action)

        @precondition(lambda self: not self.model.repo_away)
        @rule()
        @counted
        def repository_away(self):
            self.world_rule("repository", self.act_repository_away)

        def act_repository_away(self):
            m, w = self.model, self.world
            if m.repo_away:
                return None
            mode = stat.S_IMODE(os.stat(w.data_dir).st_mode)
            os.rename(w.data_dir, w.away_dir)
            os.mkdir(w.data_dir, mode)  # the bare mount point
            m.repo_away = True
            return "repository unmounted (OMERO/ renamed away, an empty OMERO/ left)"

        @precondition(lambda self: self.model.repo_away)
        @rule()
        @counted
        def repository_back(self):
            m, w = self.model, self.world

            def action():
                os.rmdir(w.data_dir)  # empty: invariant 2 checked it after every step
                os.rename(w.away_dir, w.data_dir)
                m.repo_away = False
                return "repository mounted again"
            self.world_rule("repository", action)

    return WorldMachine


class RaceHook:
    """A progress object whose start() changes the world: in a purge, after its plan and
    before it deletes anything."""

    def __init__(self, machine, label, action):
        self.machine, self.label, self.action = machine, label, action
        self.fired = False
        self.text = "did not fire (start() not called)"

    def start(self, total):
        if self.fired:
            return
        self.fired = True
        self.text = self.machine.world_change(self.label, self.action) or "nothing to do"

    def advance(self, items=1, files=0, nbytes=0):
        pass

    def done(self):
        pass


# -- a step killed in a subprocess ---------------------------------------------------------

def run_killed(spec):
    """Run spec's engine step in a child that kills itself (SIGKILL) at a file operation."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "tests.worldmodel_support", "child",
                             json.dumps(spec)], cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    lines = out.decode(errors="replace").split("\n")
    said = [line for line in lines if line.startswith(("SIGKILL", "finished", "refused"))]
    if proc.returncode == -signal.SIGKILL:
        return "killed " + (said[-1] if said else "")
    if "go" not in lines:
        return f"the child never started: {err.decode(errors='replace')[-400:]}"
    return "not killed: " + (said[-1] if said else f"exit {proc.returncode}")


_KILL_POINTS = ("unlink", "replace", "rename", "symlink", "mkdir", "rmdir", "fsync")


def _arm(at):
    """SIGKILL this process at file operation (at+1)//2: before it (odd), after it (even)."""
    target, after = (at + 1) // 2, at % 2 == 0
    count = [0]

    def wrap(name, fn):
        def operation(*args, **kwargs):
            count[0] += 1
            if count[0] == target and not after:
                print(f"SIGKILL before {name} #{target} {args[:1]}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            result = fn(*args, **kwargs)
            if count[0] == target and after:
                print(f"SIGKILL after {name} #{target} {args[:1]}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return operation

    for name in _KILL_POINTS:
        setattr(os, name, wrap(name, getattr(os, name)))


def child(spec):
    """The child of run_killed: Django set up, then one engine step."""
    import django

    django.setup()
    import psycopg2

    from omero_storagemanager.catalog.collections import parse_key
    from omero_storagemanager.catalog.paths import RepositoryPaths
    from omero_storagemanager.engine.archive import archive_collection
    from omero_storagemanager.engine.purge import purge_collection
    from omero_storagemanager.engine.restore import restore_collection
    from omero_storagemanager.models import Collection, Location
    from testbed.standin import StandInGateway

    conn = psycopg2.connect(spec["dsn"])
    conn.set_session(readonly=True, autocommit=True)
    paths = RepositoryPaths(spec["data_dir"], spec["managed_dir"])
    gateway = StandInGateway(spec["dsn"], 0)
    kind, oid = parse_key(spec["key"])
    collection = Collection.objects.get(kind=kind, omero_id=oid)
    location = Location.objects.get(pk=spec["location"])
    print("go", flush=True)
    _arm(spec["at"])
    try:
        if spec["op"] == "purge":
            call(purge_collection, conn, paths, collection, gateway, copies_required=1,
                 along_with={spec["key"]}, rename=True, archive_user_id=ARCHIVE_USER,
                 archive_group_id=ARCHIVE_GROUP, log=_quiet)
        elif spec["op"] == "restore":
            call(restore_collection, collection, gateway, log=_quiet, workers=1, paths=paths,
                 conn=conn)
        else:
            call(archive_collection, conn, paths, collection, location, workers=1, log=_quiet)
        print("finished before the kill", flush=True)
    except Exception as exc:  # noqa: BLE001
        print(f"refused: {type(exc).__name__}: {first_line(exc)}", flush=True)


# -- running it -----------------------------------------------------------------------------

class Env:
    """What the examples share: the template, a work folder, options, counters."""

    def __init__(self, server, workdir, max_kills=1, verbose=False, ignore=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.template = Template(server, self.workdir)
        self.max_kills = max_kills
        self.ignore = set(ignore)  # violation tags counted but not failing (known bugs)
        self.verbose = verbose
        self.examples = 0
        self.steps = 0  # engine calls and world changes
        self.rule_steps = 0  # rule steps (some make several engine calls)
        self.violations = {}
        self.outcomes = {}
        self.first_failure = self.last_failure = None

    def record_failure(self, text):
        """Keep the first and the latest violation found: what to report when Hypothesis
        cannot replay a failure (the engine is not deterministic in everything)."""
        if self.first_failure is None:
            self.first_failure = text
        self.last_failure = text

    def close(self):
        self.template.drop()


def machine_factory(env):
    cls = _machine_class()
    return type("WorldMachine", (cls,), {"env": env})


def run(env, *, examples, steps, seed=None, shrink=True, derandomize=False):
    """Run the state machine: `examples` examples of up to `steps` steps each, from
    `seed` (an int) or Hypothesis's own choice. Raises the (shrunk) failure: its message
    says which invariant broke on which file after which steps, its __notes__ hold
    Hypothesis's minimal program."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as seeded
    from hypothesis.stateful import get_state_machine_test

    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if shrink:
        phases.append(Phase.shrink)
    options = settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                       database=None, phases=phases, derandomize=derandomize,
                       suppress_health_check=list(HealthCheck), print_blob=False,
                       report_multiple_bugs=False)
    test = get_state_machine_test(machine_factory(env), settings=options,
                                  _flaky_state={"selecting_rule": False})
    if seed is not None and not derandomize:
        test = seeded(seed)(test)
    env.first_failure = env.last_failure = None
    try:
        test()
    except Violation:
        raise
    except Exception as exc:
        if env.first_failure is None:
            raise
        # Hypothesis found a violation, then could not replay it the same way (a step
        # whose outcome depends on timing): report the violation as it was found.
        raise Violation(f"\n{env.first_failure}\n(Hypothesis could not shrink it: "
                        f"{type(exc).__name__}: {first_line(exc)}; the latest form seen:)\n"
                        f"{env.last_failure}") from exc


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        child(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m tests.worldmodel_support child SPEC")
