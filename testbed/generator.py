"""A deterministic facility: an OMERO-shaped database plus the binary repository on disk.

    truth = generate_facility(dsn, root, seed=1)
    summary = generate_large(dsn, root, files=1_000_000, disk="sparse")

    python -m testbed.generator --dsn DSN --root DIR [--seed N] [--truth out.json]
    python -m testbed.generator --dsn DSN --root DIR --large --files 1000000 --disk sparse

`dsn` names a database made by testbed.omerodb (schema and built-in rows); an empty
database gets them first. Under `root`:

    root/OMERO/               omero.data.dir: Pixels/ Files/ Thumbnails/ ManagedRepository/
    root/inplace/             targets of in-place-import symlinks (outside the repository)

generate_facility() writes a small facility that holds the cases a storage manager must
get right (shared filesets, images linked twice, in-place imports, OMERO 4 data, numbered
Dir-XXX paths, plates of hundreds of files, odd names, a missing file, a size mismatch)
and returns a testbed.truth.Truth computed from its own construction, never by reading
back the database. generate_large() bulk-loads a big facility with COPY for benchmarks.
All times are naive UTC, as OMERO's `timestamp` columns; file times on disk match them.
"""
import argparse
import calendar
import datetime as dt
import hashlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import psycopg2
import psycopg2.extras

from testbed import eventlog, omerodb
from testbed.omerodb import (CHECKSUM_ALGORITHMS, MD5_128, PERMISSIONS, SHA1_160,
                             SYSTEM_GROUP_ID, USER_GROUP_ID)
from testbed.truth import Truth

IMPORT_EVENT, USER_EVENT = 1, 4          # eventtype ids: 'Import', 'User'
FINISHED = 8                              # jobstatus 'Finished'
UINT8, UINT16 = 5, 6                      # pixelstype ids
XYZCT = 1                                 # dimensionorder id
LOG_MIMETYPE = "application/omero-log-file"
FS_MIMETYPE = "application/octet-stream"
FILE_ANNOTATION, MAP_ANNOTATION, TAG_ANNOTATION = "/type/OriginalFile/", "/map/", "/basic/text/tag/"
MAP_NS = "openmicroscopy.org/omero/client/mapAnnotation"
# The five jobs an FS import links to its fileset, in OMERO's order; the UploadJob
# carries the import log.
FS_JOBS = ["uploadjob", "metadataimportjob", "pixeldatajob", "thumbnailgenerationjob",
           "indexingjob"]

# Tables without an id column (job subclasses are keyed by job_id).
NO_ID_TABLES = {"annotation_mapvalue", "importjob", *FS_JOBS}

# Insertion order that satisfies the foreign keys.
TABLE_ORDER = [
    "experimentergroup", "experimenter", "groupexperimentermap", "session", "event",
    "originalfile", "fileset", "filesetentry", "job", *FS_JOBS, "filesetjoblink",
    "joboriginalfilelink", "project", "dataset", "projectdatasetlink", "image",
    "datasetimagelink", "pixels", "thumbnail", "pixelsoriginalfilemap", "screen", "plate",
    "screenplatelink", "well", "wellsample", "annotation", "annotation_mapvalue",
    "projectannotationlink", "datasetannotationlink", "imageannotationlink",
    "screenannotationlink", "plateannotationlink", "wellannotationlink",
]


# -- small pure helpers -------------------------------------------------------------------

def numbered_path(object_id):
    """OMERO's path of Pixels/<id>, Files/<id>, Thumbnails/<id> under its directory.

    While the remaining id is > 999 it is divided by 1000 and `Dir-%03d/` of the
    remainder mod 1000 is prepended: 999 -> '999', 1000 -> 'Dir-001/1000',
    1234567 -> 'Dir-001/Dir-234/1234567'.
    """
    parts = []
    remaining = object_id
    while remaining > 999:
        remaining //= 1000
        parts.insert(0, "Dir-%03d" % (remaining % 1000))
    return "/".join(parts + [str(object_id)])


def epoch(when):
    return calendar.timegm(when.timetuple())


def iso(when):
    return when.isoformat(timespec="milliseconds")


def checksum(data, hasher):
    if hasher == SHA1_160:
        return hashlib.sha1(data).hexdigest()
    if hasher == MD5_128:
        return hashlib.md5(data).hexdigest()
    if hasher is None:
        return None
    raise ValueError(f"no checksum for hasher {hasher}")


def template_prefix(omename, user_id, when):
    """omero.fs.repo.path %user%_%userId%//%year%-%month%/%day%/%time% for one import."""
    return (f"{omename}_{user_id}/{when:%Y-%m}/{when:%d}/"
            f"{when:%H-%M-%S}.{when.microsecond // 1000:03d}/")


def well_name(row, column):
    return f"{chr(ord('A') + row)}{column + 1}"


class Ev:
    """An event, numbered at flush time in chronological order (as OMERO's ids grow)."""

    def __init__(self, order, when):
        self.order, self.time, self.id = order, when, None


class Ids:
    """Per-table id counters; skip_to() leaves a gap, as deleted rows do in OMERO."""

    def __init__(self, **start):
        self.next = dict(start)

    def __call__(self, table):
        value = self.next.get(table, 1)
        self.next[table] = value + 1
        return value

    def skip_to(self, table, value):
        self.next[table] = max(self.next.get(table, 1), value)


# -- the small facility ---------------------------------------------------------------------

class FacilityBuilder:
    """Writes the repository files as it goes and keeps the rows and a model in memory.

    The model (projects, datasets, images, filesets, ... with their file records) is
    what the Truth is computed from; the rows go to the database at flush().
    """

    def __init__(self, root, seed):
        self.seed = seed
        self.rng = random.Random(seed)
        self.root = Path(os.path.abspath(root))
        self.data_dir = self.root / "OMERO"
        self.managed_dir = self.data_dir / "ManagedRepository"
        self.inplace_dir = self.root / "inplace"
        self.repo_uuid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.legacy_uuid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        # Built-in rows hold the low ids (see omerodb.insert_builtins).
        self.ids = Ids(experimenter=2, experimentergroup=3, groupexperimentermap=3, session=2)
        self.rows = defaultdict(list)
        self.events = []
        self.users, self.groups = {}, {}
        self.dirs = set()
        self.projects, self.datasets, self.images, self.filesets = {}, {}, {}, {}
        self.screens, self.plates, self.wells, self.annotations = {}, {}, {}, {}
        for sub in ("Pixels", "Files", "Thumbnails", "ManagedRepository", "FullText",
                    "BioFormatsCache"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.inplace_dir.mkdir(parents=True, exist_ok=True)
        for gid, name, perms in ((0, "system", -120), (1, "user", -52), (2, "guest", -120)):
            self.groups[gid] = {"name": name, "permissions": perms}

    # -- rows ---------------------------------------------------------------------------
    def add(self, table, **cols):
        """Queue a row; tables with an id column get the next id unless one is given."""
        if "id" not in cols and table not in NO_ID_TABLES:
            cols["id"] = self.ids(table)
        self.rows[table].append(cols)
        return cols.get("id")

    def details(self, uid, gid, ev):
        """OMERO's details block: owner, group, creation and update events."""
        return {"owner_id": uid, "group_id": gid, "creation_id": ev, "update_id": ev,
                "permissions": self.groups[gid]["permissions"], "version": 0}

    # -- time and content ----------------------------------------------------------------
    def moment(self, year, month, day=None):
        """A working-hours moment in that month (day random unless given), with ms."""
        day = day or self.rng.randint(1, 28)
        return dt.datetime(year, month, day, self.rng.randint(8, 19), self.rng.randint(0, 59),
                           self.rng.randint(0, 59), self.rng.randint(0, 999) * 1000)

    def later(self, when, low_s, high_s):
        return when + dt.timedelta(seconds=self.rng.randint(low_s, high_s))

    def blob(self, label, size):
        """Deterministic pseudo-random bytes, with the magic number of the file type."""
        data = random.Random(f"{self.seed}:{label}").randbytes(size)
        magic = {".tif": b"II*\x00", ".tiff": b"II*\x00", ".pdf": b"%PDF-1.4\n",
                 ".jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", ".czi": b"ZISRAWFILE",
                 ".lif": b"\x70\x00\x00\x00", ".dv": b"\xa0\xc0"}
        for ext, head in magic.items():
            if label.lower().endswith(ext):
                return (head + data[len(head):])[:size]
        return data

    def text(self, label, size, lines):
        """size bytes of text made of the given lines, repeated with counters."""
        out, n = [], 0
        while sum(map(len, out)) < size:
            out.append(f"{lines[n % len(lines)]} [{label} #{n}]\n".encode())
            n += 1
        return b"".join(out)[:size]

    def put(self, path, data, mtime, atime):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (epoch(atime), epoch(mtime)))

    # -- users and events -----------------------------------------------------------------
    def group(self, name, level, description=None):
        gid = self.add("experimentergroup", name=name, permissions=PERMISSIONS[level],
                       ldap=False, version=0, description=description)
        self.groups[gid] = {"name": name, "permissions": PERMISSIONS[level]}
        return gid

    def user(self, omename, first, last, email, groups, owner_of=(), admin=False):
        """groups: the user's groups, default group (child_index 0) first; admins are
        in 'system' too; everybody is in 'user', as OMERO does."""
        uid = self.add("experimenter", omename=omename, firstname=first, lastname=last,
                       email=email, institution="Imaging Facility", ldap=False,
                       permissions=0, version=0)
        memberships = list(groups) + ([SYSTEM_GROUP_ID] if admin else []) + [USER_GROUP_ID]
        for index, gid in enumerate(memberships):
            self.add("groupexperimentermap", parent=gid, child=uid, child_index=index,
                     owner=gid in owner_of, permissions=-52, version=0)
        self.users[uid] = {"omename": omename, "firstname": first, "lastname": last,
                           "email": email, "groups": sorted(memberships),
                           "owner_of": sorted(owner_of), "admin": admin}
        return uid

    def event(self, uid, gid, when, etype=USER_EVENT):
        """One session and one event: what a client's save or an import leaves behind."""
        agent = "OMERO.importer" if etype == IMPORT_EVENT else "OMERO.web"
        sid = self.add("session", permissions=-52, started=self.later(when, -600, -5),
                       closed=self.later(when, 60, 3600),
                       defaulteventtype="Import" if etype == IMPORT_EVENT else "User",
                       timetoidle=600000, timetolive=0, useragent=agent, userip="10.1.2.3",
                       uuid=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                       node=0, owner=uid, version=0)
        ev = Ev(len(self.events), when)
        self.events.append(ev)
        self.add("event", id=ev, permissions=-52, status=None, time=when, experimenter=uid,
                 experimentergroup=gid, session=sid, type=etype)
        return ev

    # -- files -------------------------------------------------------------------------------
    def originalfile(self, uid, gid, ev, *, path, name, size, digest, hasher, mimetype, repo,
                     mtime, atime):
        return self.add("originalfile", path=path, name=name, size=size, hash=digest,
                        hasher=hasher, mimetype=mimetype, repo=repo, mtime=mtime,
                        ctime=ev.time.replace(microsecond=0), atime=atime,
                        **self.details(uid, gid, ev))

    def record(self, kind, path, data, hasher, *, mtime, atime, ofid=None, **extra):
        rec = {"path": str(path), "kind": kind, "size": len(data),
               "hash": checksum(data, hasher),
               "hasher": CHECKSUM_ALGORITHMS.get(hasher), "originalfile_id": ofid,
               "fileset_id": None, "pixels_id": None, "symlink_target": None,
               "missing": False, "mtime": epoch(mtime), "atime": epoch(atime)}
        rec.update(extra)
        return rec

    def managed_dirs(self, rel_dir, uid, gid, ev):
        """Directory rows OMERO keeps for every ManagedRepository folder it made.

        The %user%_%userId% folder (before the template's //) belongs to root in 'user'.
        """
        parts = [p for p in rel_dir.split("/") if p]
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            if rel in self.dirs:
                continue
            self.dirs.add(rel)
            owner, group = (0, USER_GROUP_ID) if depth == 1 else (uid, gid)
            parent = "/".join(parts[:depth - 1])
            self.originalfile(owner, group, ev, path=parent + "/" if parent else "",
                              name=parts[depth - 1], size=None, digest=None, hasher=None,
                              mimetype="Directory", repo=self.repo_uuid, mtime=ev.time.replace(microsecond=0),
                              atime=None)
        (self.managed_dir / rel_dir).mkdir(parents=True, exist_ok=True)

    def numbered_file(self, area, object_id, data, when, suffix=""):
        path = self.data_dir / area / (numbered_path(object_id) + suffix)
        self.put(path, data, when, when)
        return path

    # -- FS imports ----------------------------------------------------------------------------
    def fs_import(self, uid, gid, when, client_dir, files, images, *, hasher=SHA1_160,
                  inplace=False, pyramid=False, missing=(), short_by=None):
        """One OMERO 5 import: fileset, entries, original files, jobs, import log, images.

        files: [(path relative to the fileset folder, size)]; the first is the file
        Bio-Formats opens. images: [(name, series)]. inplace: the entries are symlinks
        to copies under root/inplace (an `--transfer=ln_s` import). missing: names not
        written to disk. short_by: {name: bytes} written shorter than the database says.
        Returns the fileset id and the image ids.
        """
        omename = self.users[uid]["omename"]
        ev = self.event(uid, gid, when, IMPORT_EVENT)
        prefix = template_prefix(omename, uid, when)
        fsid = self.add("fileset", templateprefix=prefix, **self.details(uid, gid, ev))
        fileset = {"id": fsid, "files": [], "image_ids": []}
        self.filesets[fsid] = fileset
        self.managed_dirs(prefix, uid, gid, ev)
        acquired = self.later(when, -86400 * 30, -3600).replace(microsecond=0)
        main = None
        for index, (rel, size) in enumerate(files):
            rel_dir, _, name = rel.rpartition("/")
            if rel_dir:
                self.managed_dirs(prefix + rel_dir, uid, gid, ev)
            data = self.blob(f"fs{fsid}/{rel}", size)
            disk_data = data[:len(data) - (short_by or {}).get(name, 0)]
            path = self.managed_dir / prefix / rel
            rec = self.record("fileset_entry", path, disk_data, hasher, mtime=acquired,
                              atime=when, fileset_id=fsid)
            if inplace:
                target = self.inplace_dir / omename / client_dir / rel
                self.put(target, data, acquired, when)
                path.symlink_to(target)
                os.utime(path, (epoch(when), epoch(acquired)), follow_symlinks=False)
                rec["symlink_target"] = str(target)
                client_path = str(target).lstrip("/")
            else:
                if name not in missing:
                    self.put(path, disk_data, acquired, when)
                client_path = f"{client_dir}/{rel}"
            if name in missing:
                rec["missing"] = True
            if len(disk_data) != len(data):
                rec.update(db_size=len(data), db_hash=checksum(data, hasher))
            ofid = self.originalfile(uid, gid, ev, path=prefix + (rel_dir + "/" if rel_dir else ""),
                                     name=name, size=len(data), digest=checksum(data, hasher),
                                     hasher=hasher, mimetype=FS_MIMETYPE, repo=self.repo_uuid,
                                     mtime=acquired, atime=when.replace(microsecond=0))
            rec["originalfile_id"] = ofid
            self.add("filesetentry", fileset=fsid, originalfile=ofid, fileset_index=index,
                     clientpath=client_path, **self.details(uid, gid, ev))
            fileset["files"].append(rec)
            if main is None:
                main = (prefix + (rel_dir + "/" if rel_dir else ""), name)
        self.import_jobs_and_log(uid, gid, ev, fileset, prefix, client_dir, files)
        for name, series in images:
            iid = self.image(uid, gid, ev, name, fsid, series, acquired)
            self.pixels_for(uid, gid, ev, iid, path=main[0], name=main[1], repo=self.repo_uuid,
                            pyramid=pyramid and series == 0)
            fileset["image_ids"].append(iid)
        return fsid, list(fileset["image_ids"])

    def import_jobs_and_log(self, uid, gid, ev, fileset, prefix, client_dir, files):
        """The five jobs of an FS import; the UploadJob links the log beside the folder."""
        user, group = self.users[uid]["omename"], self.groups[gid]["name"]
        when = ev.time
        done = self.later(when, 5, 600)
        job_ids = []
        for index, subclass in enumerate(FS_JOBS):
            jid = self.add("job", username=user, groupname=group, type="", message="",
                           status=FINISHED, submitted=when, scheduledfor=when, started=when,
                           finished=done, **self.details(uid, gid, ev))
            self.add(subclass, job_id=jid)
            self.add("filesetjoblink", parent=fileset["id"], child=jid, parent_index=index,
                     **self.details(uid, gid, ev))
            job_ids.append(jid)
        # alice_2/2019-03/07/14-02-31.553/ -> alice_2/2019-03/07/14-02-31.553.log
        parent, _, folder = prefix.rstrip("/").rpartition("/")
        log_dir, log_name = parent + "/", folder + ".log"
        lines = [f"{when:%Y-%m-%d %H:%M:%S},{when.microsecond // 1000:03d} INFO "
                 f"ome.formats.importer.ImportLibrary - Processing: {client_dir}/{rel}"
                 for rel, _ in files[:20]]
        lines += ["INFO  ome.formats.importer.ImportLibrary - IMPORT_DONE",
                  "INFO  ome.services.blitz.repo.ManagedImportRequestI - Finished"]
        data = self.text(f"log{fileset['id']}", self.rng.randint(2_000, 12_000), lines)
        path = self.managed_dir / log_dir / log_name
        self.put(path, data, done.replace(microsecond=0), done.replace(microsecond=0))
        # OMERO writes the log after the checksums are computed: no hash is stored.
        ofid = self.originalfile(uid, gid, ev, path=log_dir, name=log_name, size=len(data),
                                 digest=None, hasher=None, mimetype=LOG_MIMETYPE,
                                 repo=self.repo_uuid, mtime=done.replace(microsecond=0),
                                 atime=done.replace(microsecond=0))
        self.add("joboriginalfilelink", parent=job_ids[0], child=ofid,
                 **self.details(uid, gid, ev))
        fileset["files"].append(self.record("import_log", path, data, None, ofid=ofid,
                                            mtime=done, atime=done, fileset_id=fileset["id"]))

    # -- images, pixels, thumbnails --------------------------------------------------------------
    def image(self, uid, gid, ev, name, fileset, series, acquired, archived=False):
        iid = self.add("image", name=name, fileset=fileset, series=series,
                       acquisitiondate=acquired, archived=archived, partial=False,
                       **self.details(uid, gid, ev))
        self.images[iid] = {"id": iid, "fileset": fileset, "files": [], "thumbs": [],
                            "annotations": []}
        return iid

    def pixels_for(self, uid, gid, ev, iid, *, path=None, name=None, repo=None,
                   dims=None, ptype=UINT16, pyramid=False, data_file=False):
        """A Pixels row, its thumbnail, and the Pixels/ files OMERO writes for it.

        data_file: an OMERO 4 image, whose planes live in Pixels/<id>; pyramid: a big
        image with Pixels/<id>_pyramid and the <id>_pyramid.pyr_lock beside it.
        """
        x, y, z, c, t = dims or (self.rng.choice([512, 1024, 2048]),
                                 self.rng.choice([512, 1024, 2048]),
                                 self.rng.randint(1, 12), self.rng.randint(1, 4), 1)
        pid = self.add("pixels", image=iid, image_index=0, sizex=x, sizey=y, sizez=z,
                       sizec=c, sizet=t, dimensionorder=XYZCT, pixelstype=ptype,
                       significantbits=8 if ptype == UINT8 else 16,
                       physicalsizex=0.1625, physicalsizexunit="µm",
                       physicalsizey=0.1625, physicalsizeyunit="µm",
                       # Not a file checksum: OMERO 5 imports leave a placeholder.
                       sha1="Foo" if repo else hashlib.sha1(f"{iid}".encode()).hexdigest(),
                       path=path, name=name, repo=repo, **self.details(uid, gid, ev))
        when = self.later(ev.time, 30, 900).replace(microsecond=0)
        files = self.images[iid]["files"]
        if data_file:
            size = x * y * z * c * t * (1 if ptype == UINT8 else 2)
            data = self.blob(f"pixels{pid}", size)
            path_ = self.numbered_file("Pixels", pid, data, when)
            files.append(self.record("pixels", path_, data, None, mtime=when, atime=when,
                                     pixels_id=pid))
        if pyramid:
            data = self.blob(f"pyramid{pid}", self.rng.randint(900_000, 1_600_000))
            path_ = self.numbered_file("Pixels", pid, data, when, "_pyramid")
            files.append(self.record("pyramid", path_, data, None, mtime=when, atime=when,
                                     pixels_id=pid))
            lock = self.numbered_file("Pixels", pid, b"", when, "_pyramid.pyr_lock")
            files.append(self.record("pyramid_lock", lock, b"", None, mtime=when, atime=when,
                                     pixels_id=pid))
        self.thumbnail(uid, gid, ev, iid, pid, when)
        return pid

    def thumbnail(self, uid, gid, ev, iid, pid, when):
        tid = self.add("thumbnail", pixels=pid, mimetype="image/jpeg", sizex=96, sizey=96,
                       ref=None, **self.details(uid, gid, ev))
        data = self.blob(f"thumb{tid}.jpg", self.rng.randint(1_500, 6_000))
        path = self.numbered_file("Thumbnails", tid, data, when)
        self.images[iid]["thumbs"].append({"path": str(path), "size": len(data),
                                           "thumbnail_id": tid, "pixels_id": pid})

    def legacy_image(self, uid, gid, when, name, dims, ptype, client_dir, original=None,
                     hashed=True, pyramid=False):
        """An OMERO 4 image: no fileset, planes in Pixels/<id>, and (when the user
        archived them) the original file in Files/<originalfile id> linked with
        pixelsoriginalfilemap."""
        ev = self.event(uid, gid, when, IMPORT_EVENT)
        acquired = self.later(when, -86400 * 10, -3600).replace(microsecond=0)
        iid = self.image(uid, gid, ev, name, None, 0, acquired, archived=original is not None)
        pid = self.pixels_for(uid, gid, ev, iid, dims=dims, ptype=ptype, pyramid=pyramid,
                              data_file=True)
        if original:
            size = original
            data = self.blob(f"original-{name}", size)
            hasher = SHA1_160 if hashed else None
            ofid = self.originalfile(uid, gid, ev, path=client_dir + "/", name=name, size=size,
                                     digest=checksum(data, hasher), hasher=hasher,
                                     mimetype="application/octet-stream", repo=None,
                                     mtime=acquired, atime=when.replace(microsecond=0))
            path = self.numbered_file("Files", ofid, data, when.replace(microsecond=0))
            os.utime(path, (epoch(when), epoch(acquired)))
            self.add("pixelsoriginalfilemap", parent=ofid, child=pid,
                     **self.details(uid, gid, ev))
            self.images[iid]["files"].append(self.record(
                "original", path, data, hasher, ofid=ofid, mtime=acquired, atime=when,
                pixels_id=pid))
        return iid

    # -- containers ----------------------------------------------------------------------------
    def project(self, uid, gid, when, name, description=None):
        ev = self.event(uid, gid, when)
        pid = self.add("project", name=name, description=description,
                       **self.details(uid, gid, ev))
        self.projects[pid] = {"id": pid, "name": name, "owner_id": uid, "group_id": gid,
                              "created": when, "dataset_ids": [], "annotations": []}
        return pid

    def dataset(self, uid, gid, when, name, projects=()):
        ev = self.event(uid, gid, when)
        did = self.add("dataset", name=name, **self.details(uid, gid, ev))
        self.datasets[did] = {"id": did, "image_ids": [], "annotations": []}
        for pid in projects:
            self.link_dataset(pid, did, uid, gid, when)
        return did

    def link_dataset(self, pid, did, uid, gid, when):
        ev = self.event(uid, gid, when)
        self.add("projectdatasetlink", parent=pid, child=did, **self.details(uid, gid, ev))
        self.projects[pid]["dataset_ids"].append(did)

    def link_images(self, did, image_ids, uid, gid, when):
        ev = self.event(uid, gid, when)
        for iid in image_ids:
            self.add("datasetimagelink", parent=did, child=iid, **self.details(uid, gid, ev))
            self.datasets[did]["image_ids"].append(iid)

    def screen(self, uid, gid, when, name, description=None):
        ev = self.event(uid, gid, when)
        sid = self.add("screen", name=name, description=description,
                       **self.details(uid, gid, ev))
        self.screens[sid] = {"id": sid, "name": name, "owner_id": uid, "group_id": gid,
                             "created": when, "plate_ids": [], "annotations": []}
        return sid

    def link_plate(self, sid, plate_id, uid, gid, when):
        ev = self.event(uid, gid, when)
        self.add("screenplatelink", parent=sid, child=plate_id, **self.details(uid, gid, ev))
        self.screens[sid]["plate_ids"].append(plate_id)

    def plate_import(self, uid, gid, when, screens, name, client_dir, rows, columns, fields,
                     index_file, field_file, file_sizes):
        """An HCS import: one fileset for the whole plate (an index file plus one file per
        well and field), one image per well sample."""
        files = [(index_file, self.rng.randint(20_000, 80_000))]
        layout = []
        for r in range(rows):
            for c in range(columns):
                for f in range(fields):
                    files.append((field_file(r, c, f), self.rng.randint(*file_sizes)))
                    layout.append((r, c, f))
        images = [(f"{name} [Well {well_name(r, c)}, Field {f + 1}]", n)
                  for n, (r, c, f) in enumerate(layout)]
        fsid, image_ids = self.fs_import(uid, gid, when, client_dir, files, images)
        ev = self.event(uid, gid, self.later(when, 1, 5), IMPORT_EVENT)
        plate_id = self.add("plate", name=name, rows=rows, columns=columns, defaultsample=0,
                            columnnamingconvention="number", rownamingconvention="letter",
                            **self.details(uid, gid, ev))
        plate = {"id": plate_id, "image_ids": list(image_ids), "well_ids": []}
        self.plates[plate_id] = dict(plate, annotations=[])
        wells = {}
        for (r, c, f), iid in zip(layout, image_ids):
            if (r, c) not in wells:
                wells[(r, c)] = self.add("well", plate=plate_id, row=r, column=c,
                                         **self.details(uid, gid, ev))
                self.wells[wells[(r, c)]] = {"id": wells[(r, c)], "plate": plate_id,
                                             "name": well_name(r, c), "annotations": []}
                self.plates[plate_id]["well_ids"].append(wells[(r, c)])
            self.add("wellsample", well=wells[(r, c)], image=iid, well_index=f,
                     **self.details(uid, gid, ev))
        for sid in screens:
            self.link_plate(sid, plate_id, uid, gid, when)
        return plate_id

    # -- annotations ---------------------------------------------------------------------------
    def targets(self, targets, ann_id, uid, gid, ev):
        models = {"project": self.projects, "dataset": self.datasets, "image": self.images,
                  "screen": self.screens, "plate": self.plates, "well": self.wells}
        for kind, oid in targets:
            self.add(f"{kind}annotationlink", parent=oid, child=ann_id,
                     **self.details(uid, gid, ev))
            models[kind][oid]["annotations"].append(ann_id)

    def attach(self, uid, gid, when, name, size, mimetype, targets, client_dir):
        """A FileAnnotation: the file goes to Files/<originalfile id>, repo NULL."""
        ev = self.event(uid, gid, when)
        if mimetype.startswith("text/"):
            data = self.text(name, size, ["well,compound,concentration_uM",
                                          "B3,staurosporine,1.0", "C7,DMSO,0"])
        else:
            data = self.blob(f"attachment-{name}", size)
        mtime = self.later(when, -86400 * 5, -60).replace(microsecond=0)
        ofid = self.originalfile(uid, gid, ev, path=client_dir + "/", name=name,
                                 size=len(data), digest=checksum(data, SHA1_160),
                                 hasher=SHA1_160, mimetype=mimetype, repo=None, mtime=mtime,
                                 atime=when.replace(microsecond=0))
        path = self.numbered_file("Files", ofid, data, when.replace(microsecond=0))
        os.utime(path, (epoch(when), epoch(mtime)))
        ann = self.add("annotation", discriminator=FILE_ANNOTATION, file=ofid, ns=None,
                       **self.details(uid, gid, ev))
        self.annotations[ann] = self.record("attachment", path, data, SHA1_160, ofid=ofid,
                                            mtime=mtime, atime=when)
        self.targets(targets, ann, uid, gid, ev)
        return ann

    def map_annotation(self, uid, gid, when, pairs, targets):
        ev = self.event(uid, gid, when)
        ann = self.add("annotation", discriminator=MAP_ANNOTATION, ns=MAP_NS,
                       **self.details(uid, gid, ev))
        for index, (key, value) in enumerate(pairs):
            self.add("annotation_mapvalue", annotation_id=ann, name=key, value=value,
                     index=index)
        self.annotations[ann] = None
        self.targets(targets, ann, uid, gid, ev)

    def tag(self, uid, gid, when, text, targets):
        ev = self.event(uid, gid, when)
        ann = self.add("annotation", discriminator=TAG_ANNOTATION, textvalue=text,
                       **self.details(uid, gid, ev))
        self.annotations[ann] = None
        self.targets(targets, ann, uid, gid, ev)

    def repositories(self):
        """The Repository rows: hash holds the repository's UUID (originalfile.repo)."""
        for path, name, digest, when in (
                (str(self.root) + "/", "OMERO", self.legacy_uuid, dt.datetime(2012, 6, 4, 9, 5)),
                (str(self.data_dir) + "/", "ManagedRepository", self.repo_uuid,
                 dt.datetime(2015, 1, 12, 7, 30))):
            ev = self.event(0, SYSTEM_GROUP_ID, when, 2)
            self.originalfile(0, SYSTEM_GROUP_ID, ev, path=path, name=name, size=None,
                              digest=digest, hasher=None, mimetype="Repository", repo=None,
                              mtime=None, atime=None)

    # -- the facility --------------------------------------------------------------------------
    def build(self):
        """The scenario: who works where, and what each user imported, when."""
        self.repositories()
        cellbio = self.group("Cell Biology", "read-annotate", "Nuclear and mitochondrial dynamics")
        core = self.group("Imaging Core", "read-write", "Shared data of the imaging facility")
        obrien = self.group("O'Brien Lab", "private")
        hcs = self.group("HCS Screening", "read-only")
        alice = self.user("alice", "Alice", "Martin", "alice.martin@bio.example.org",
                          [cellbio, core], owner_of=[cellbio])
        bob = self.user("bob", "Bob", "Nakamura", "b.nakamura@bio.example.org",
                        [core, cellbio], owner_of=[core])
        chloe = self.user("chloe", "Chloé", "Dubois", "chloe.dubois@bio.example.org",
                          [cellbio, obrien])
        dmitri = self.user("dmitri", "Dmitri", "Ivanov", "d.ivanov@bio.example.org",
                           [core, hcs])
        eve = self.user("eve", "Eve", "O'Brien", "eve.obrien@bio.example.org", [obrien],
                        owner_of=[obrien])
        farid = self.user("farid", "Farid", "Haddad", "farid.haddad@bio.example.org", [hcs],
                          owner_of=[hcs])
        ingrid = self.user("ingrid", "Ingrid", "Sørensen", "ingrid.sorensen@bio.example.org",
                           [core], owner_of=[core], admin=True)

        # Eve's OMERO 4 pilot, from before the OMERO 5 upgrade. Ids straddle 999/1000 so
        # that both Pixels/999 and Pixels/Dir-001/1000 (and Files/..., Thumbnails/...) exist.
        self.ids.skip_to("pixels", 998)
        self.ids.skip_to("originalfile", 998)
        self.ids.skip_to("thumbnail", 999)
        pilot = self.project(eve, obrien, self.moment(2013, 5), "O'Brien pilot (OMERO 4)",
                             "Imported with OMERO 4.4")
        pilot_ds = self.dataset(eve, obrien, self.moment(2013, 5), "Pilot 2013", [pilot])
        legacy = [
            self.legacy_image(eve, obrien, self.moment(2013, 6), "pilot_01.dv",
                              (512, 512, 1, 2, 1), UINT16, "home/eve/pilot", 1_050_000),
            self.legacy_image(eve, obrien, self.moment(2013, 6), "pilot_02.dv",
                              (512, 512, 2, 1, 1), UINT16, "home/eve/pilot", 1_049_000),
            self.legacy_image(eve, obrien, self.moment(2013, 7), "Eve's cells 3.dv",
                              (1024, 1024, 1, 1, 1), UINT16, "home/eve/pilot", 2_098_000,
                              hashed=False),
            self.legacy_image(eve, obrien, self.moment(2013, 9), "stack 4.tif",
                              (2048, 2048, 1, 1, 1), UINT8, "home/eve/pilot", pyramid=True),
        ]
        self.link_images(pilot_ds, legacy, eve, obrien, self.moment(2013, 9))
        self.tag(eve, obrien, self.moment(2014, 2), "legacy", [("dataset", pilot_ds)])

        # Alice: a project with single-file, multi-file (.vsi with companions) and
        # OME-TIFF filesets; one image linked from both datasets; a .lif whose series
        # go to two different projects (a shared fileset).
        nuclei = self.project(alice, cellbio, self.moment(2017, 3, 1), "Zellkern Färbung",
                              "DAPI und Lamin B1")
        day1 = self.dataset(alice, cellbio, self.moment(2017, 3, 2), "Tag 1", [nuclei])
        day2 = self.dataset(alice, cellbio, self.moment(2017, 3, 2), "Tag 2", [nuclei])
        _, tif = self.fs_import(alice, cellbio, self.moment(2017, 3, 7), "home/alice/Färbung",
                                [("Zellkern Färbung 1.tif", self.rng.randint(2_000_000, 3_000_000))],
                                [("Zellkern Färbung 1.tif", 0)])
        _, vsi = self.fs_import(alice, cellbio, self.moment(2017, 3, 9), "home/alice/slides",
                                [("slide 01.vsi", 41_235),
                                 ("_slide 01_/stack1/frame_t_0.ets", self.rng.randint(2_500_000, 3_500_000)),
                                 ("_slide 01_/stack10001/frame_t_0.ets", self.rng.randint(400_000, 700_000))],
                                [("slide 01.vsi [20x_01]", 0), ("slide 01.vsi [macro image]", 1)])
        _, ome = self.fs_import(alice, cellbio, self.moment(2018, 1), "home/alice/実験",
                                [("実験 2.ome.tiff", self.rng.randint(1_000_000, 1_500_000))],
                                [("実験 2.ome.tiff", 0)], hasher=MD5_128)
        self.link_images(day1, tif + vsi, alice, cellbio, self.moment(2017, 3, 10))
        self.link_images(day2, [vsi[0]] + ome, alice, cellbio, self.moment(2018, 1, 28))

        mito = self.project(alice, cellbio, self.moment(2018, 6, 1), "Mitochondria live imaging")
        live = self.dataset(alice, cellbio, self.moment(2018, 6, 2), "Live 1", [mito])
        _, lif = self.fs_import(alice, cellbio, self.moment(2018, 6, 12), "home/alice/live",
                                [("experiment 3.lif", self.rng.randint(3_000_000, 4_000_000))],
                                [(f"experiment 3.lif [Series {n + 1}]", n) for n in range(4)])
        self.link_images(day2, lif[:2], alice, cellbio, self.moment(2018, 6, 13))
        self.link_images(live, lif[2:], alice, cellbio, self.moment(2018, 6, 13))
        inplace_ds = self.dataset(alice, cellbio, self.moment(2019, 2, 1), "In place", [mito])
        for n in (1, 2):
            _, czi = self.fs_import(alice, cellbio, self.moment(2019, 2, 10 + n),
                                    "microscope-share/2019-02",
                                    [(f"live_cell_0{n}.czi", self.rng.randint(1_000_000, 2_000_000))],
                                    [(f"live_cell_0{n}.czi", 0)], inplace=True)
            self.link_images(inplace_ds, czi, alice, cellbio, self.moment(2019, 2, 20))
        self.attach(alice, cellbio, self.moment(2017, 3, 3), "Färbeprotokoll v2.pdf", 183_211,
                    "application/pdf", [("project", nuclei)], "home/alice/Documents")
        self.attach(alice, cellbio, self.moment(2017, 3, 11), "notes.txt", 0, "text/plain",
                    [("image", tif[0])], "home/alice/Documents")
        self.map_annotation(alice, cellbio, self.moment(2017, 3, 4),
                            [("Organism", "Mus musculus"), ("Stain", "DAPI"),
                             ("Stain", "Lamin B1")], [("project", nuclei)])
        self.tag(alice, cellbio, self.moment(2017, 3, 12), "nuclei", [("dataset", day1)])

        # Chloé: a multi-file OME-TIFF with a zero-byte plane file (aborted acquisition).
        tub = self.project(chloe, cellbio, self.moment(2019, 9, 1), "Chloé's Färbungen")
        rep = self.dataset(chloe, cellbio, self.moment(2019, 9, 2), "Replicate A", [tub])
        _, tubulin = self.fs_import(chloe, cellbio, self.moment(2019, 9, 12), "data/chloe/tubulin",
                                    [("tubulin_t0.ome.tif", 400_000 + self.rng.randint(0, 9_999)),
                                     ("tubulin_t1.ome.tif", 400_000 + self.rng.randint(0, 9_999)),
                                     ("tubulin_t2.ome.tif", 0)],
                                    [("tubulin_t0.ome.tif", 0)])
        self.link_images(rep, tubulin, chloe, cellbio, self.moment(2019, 9, 13))

        # Eve's OMERO 5 work gets Pixels/ ids far beyond 1000 (two Dir- levels).
        self.ids.skip_to("pixels", 1_234_567)

        # Bob and Dmitri (read-write group): a dataset in both their projects, one
        # attachment on both projects, a pyramid for an FS image, a missing file.
        zebra = self.project(bob, core, self.moment(2020, 2, 1), "Lichtblatt Zebrafisch")
        embryo1 = self.dataset(bob, core, self.moment(2020, 2, 2), "Embryo 1", [zebra])
        beads = self.dataset(bob, core, self.moment(2020, 1, 5), "Calibration beads", [zebra])
        embryo2 = self.dataset(bob, core, self.moment(2020, 3, 2), "Embryo 2", [zebra])
        _, e1 = self.fs_import(bob, core, self.moment(2020, 2, 20), "D:/lightsheet/embryo 1",
                               [("embryo_1.czi", self.rng.randint(3_000_000, 4_000_000))],
                               [("embryo_1.czi", 0)], pyramid=True)
        _, bd = self.fs_import(bob, core, self.moment(2020, 1, 6), "D:/beads",
                               [("beads 100nm.tif", self.rng.randint(700_000, 900_000))],
                               [("beads 100nm.tif", 0)])
        _, e2 = self.fs_import(bob, core, self.moment(2020, 3, 3), "D:/lightsheet/embryo 2",
                               [("embryo_2.czi", self.rng.randint(1_500_000, 2_500_000))],
                               [("embryo_2.czi", 0)], missing={"embryo_2.czi"})
        self.link_images(embryo1, e1, bob, core, self.moment(2020, 2, 21))
        self.link_images(beads, bd, bob, core, self.moment(2020, 1, 7))
        self.link_images(embryo2, e2, bob, core, self.moment(2020, 3, 4))
        training = self.project(dmitri, core, self.moment(2021, 5, 1), "Confocal training")
        self.link_dataset(training, beads, dmitri, core, self.moment(2021, 5, 2))
        session1 = self.dataset(dmitri, core, self.moment(2021, 5, 3), "Session 1", [training])
        _, t1 = self.fs_import(dmitri, core, self.moment(2021, 5, 11), "C:/Users/dmitri/training",
                               [("training 01.lsm", self.rng.randint(1_500_000, 2_000_000))],
                               [("training 01.lsm", 0)], short_by={"training 01.lsm": 65_536})
        _, t2 = self.fs_import(dmitri, core, self.moment(2021, 5, 12), "C:/Users/dmitri/training",
                               [("training 02.lsm", self.rng.randint(800_000, 1_000_000))],
                               [("training 02.lsm", 0)])
        self.link_images(session1, t1 + t2, dmitri, core, self.moment(2021, 5, 13))
        self.attach(bob, core, self.moment(2021, 6, 1), "Booking rules.pdf", 95_012,
                    "application/pdf", [("project", zebra), ("project", training)],
                    "home/bob/admin")
        qc = self.project(ingrid, core, self.moment(2022, 1, 10), "Microscope QC")
        self.dataset(ingrid, core, self.moment(2022, 1, 10), "2022", [qc])

        # Screens: an InCell plate of 384 fields (385 files in one fileset), a second
        # plate linked into two screens, and a companion OME-TIFF plate.
        kis = self.screen(farid, hcs, self.moment(2019, 4, 1), "Kinase inhibitor screen 2019",
                          "384 fields, DAPI")
        followup = self.screen(farid, hcs, self.moment(2020, 1, 15), "KIS follow-up 2020")

        def incell(r, c, f):
            return f"{chr(ord('A') + r)} - {c + 1}(fld {f + 1} wv DAPI - DAPI).tif"

        plate1 = self.plate_import(farid, hcs, self.moment(2019, 4, 15), [kis], "KIS plate 1",
                                   "E:/InCell/KIS plate 1", 8, 12, 4, "KIS plate 1.xdce",
                                   incell, (2_000, 12_000))
        self.plate_import(farid, hcs, self.moment(2019, 4, 22), [kis, followup], "KIS plate 2",
                          "E:/InCell/KIS plate 2", 2, 12, 2, "KIS plate 2.xdce", incell,
                          (2_000, 12_000))
        self.plate_import(farid, hcs, self.moment(2020, 1, 20), [followup], "KIS follow-up plate",
                          "E:/InCell/follow-up", 4, 4, 1, "follow-up.xdce", incell,
                          (4_000, 16_000))
        pilot_screen = self.screen(dmitri, hcs, self.moment(2018, 11, 5), "Pilot screen 2018")
        self.plate_import(dmitri, hcs, self.moment(2018, 11, 20), [pilot_screen], "Pilot plate",
                          "data/pilot", 1, 12, 1, "pilot.companion.ome",
                          lambda r, c, f: f"pilot_{well_name(r, c)}.ome.tif", (20_000, 50_000))
        self.attach(farid, hcs, self.moment(2019, 4, 2), "plate layout.csv", 3_000, "text/csv",
                    [("screen", kis)], "home/farid")
        self.attach(farid, hcs, self.moment(2019, 5, 2), "QC report.pdf", 240_500,
                    "application/pdf", [("plate", plate1)], "home/farid")
        b3 = next(w for w in self.plates[plate1]["well_ids"] if self.wells[w]["name"] == "B3")
        self.tag(farid, hcs, self.moment(2019, 5, 3), "hit", [("well", b3)])
        self.project(farid, hcs, self.moment(2019, 4, 1), "Unsorted")

    # -- truth ---------------------------------------------------------------------------------
    def collection(self, kind, obj, image_ids, holders, **ids):
        """The files of a Project or Screen: its images' filesets (entries and import
        logs), Pixels/ files, OMERO 4 originals, and the file annotations on it, its
        datasets/plates/wells and its images. Each file once."""
        files, thumbs, filesets = {}, {}, set()
        for iid in image_ids:
            image = self.images[iid]
            if image["fileset"]:
                filesets.add(image["fileset"])
                for f in self.filesets[image["fileset"]]["files"]:
                    files.setdefault(f["path"], f)
            for f in image["files"]:
                files.setdefault(f["path"], f)
            for t in image["thumbs"]:
                thumbs.setdefault(t["path"], t)
        for holder in holders:
            for ann in holder["annotations"]:
                if self.annotations[ann]:
                    files.setdefault(self.annotations[ann]["path"], self.annotations[ann])
        foreign = {i for fs in filesets for i in self.filesets[fs]["image_ids"]} - set(image_ids)
        return dict(kind=kind, id=obj["id"], name=obj["name"], owner_id=obj["owner_id"],
                    group_id=obj["group_id"], created=iso(obj["created"]),
                    image_ids=sorted(image_ids), fileset_ids=sorted(filesets),
                    foreign_image_ids=sorted(foreign),
                    files=[dict(files[p]) for p in sorted(files)],
                    thumbnails=[dict(thumbs[p]) for p in sorted(thumbs)], **ids)

    def truth(self):
        collections = {}
        for pid, p in self.projects.items():
            datasets = [self.datasets[d] for d in p["dataset_ids"]]
            images = sorted({i for d in datasets for i in d["image_ids"]})
            collections[f"Project:{pid}"] = self.collection(
                "project", p, images, [p, *datasets, *(self.images[i] for i in images)],
                dataset_ids=sorted(p["dataset_ids"]))
        for sid, s in self.screens.items():
            plates = [self.plates[pl] for pl in s["plate_ids"]]
            wells = [self.wells[w] for pl in plates for w in pl["well_ids"]]
            images = sorted({i for pl in plates for i in pl["image_ids"]})
            collections[f"Screen:{sid}"] = self.collection(
                "screen", s, images, [s, *plates, *wells, *(self.images[i] for i in images)],
                plate_ids=sorted(s["plate_ids"]))
        holders = defaultdict(set)
        for key, col in collections.items():
            for f in col["files"]:
                holders[f["path"]].add(key)
        anomalies = {}
        for key, col in collections.items():
            for f in col["files"]:
                f["shared_with"] = sorted(holders[f["path"]] - {key})
                if f["missing"] or "db_size" in f:
                    kind = "missing" if f["missing"] else "size_mismatch"
                    anomalies[f["path"]] = dict(
                        kind=kind, path=f["path"], originalfile_id=f["originalfile_id"],
                        collections=sorted(holders[f["path"]]),
                        **({"db_size": f["db_size"], "disk_size": f["size"]}
                           if kind == "size_mismatch" else {}))
        return Truth({
            "seed": self.seed, "root": str(self.root), "data_dir": str(self.data_dir),
            "managed_dir": str(self.managed_dir), "inplace_dir": str(self.inplace_dir),
            "managed_repo_uuid": self.repo_uuid,
            "users": self.users, "groups": self.groups, "collections": collections,
            "anomalies": [anomalies[p] for p in sorted(anomalies)],
            "counts": {table: len(rows) for table, rows in sorted(self.rows.items())},
        })

    # -- database ------------------------------------------------------------------------------
    def flush(self, conn):
        """Insert every row, events numbered in time order (as OMERO's grow)."""
        for number, ev in enumerate(sorted(self.events, key=lambda e: (e.time, e.order)), 1):
            ev.id = number
        with conn.cursor() as cur:
            for table in TABLE_ORDER:
                by_columns = defaultdict(list)
                for row in self.rows.get(table, []):
                    by_columns[tuple(row)].append(
                        tuple(v.id if isinstance(v, Ev) else v for v in row.values()))
                for columns, values in by_columns.items():
                    names = ", ".join(f'"{c}"' for c in columns)
                    psycopg2.extras.execute_values(
                        cur, f"INSERT INTO {table} ({names}) VALUES %s", values, page_size=500)
        conn.commit()
        omerodb.sync_sequences(conn)
        eventlog.log_inserts(conn)


def _connect(dsn):
    """A connection to an OMERO-shaped database, with the schema loaded if it is empty."""
    conn = psycopg2.connect(dsn)
    if not omerodb.schema_loaded(conn):
        omerodb.load_schema(conn)
    return conn


def generate_facility(dsn, root, seed=1):
    """Fill the database at `dsn` and write the repository under `root`; return the Truth."""
    root = Path(root)
    if (root / "OMERO").exists():
        raise FileExistsError(f"{root / 'OMERO'} exists: generate into a fresh directory")
    builder = FacilityBuilder(root, seed)
    builder.build()
    conn = _connect(dsn)
    try:
        builder.flush(conn)
    finally:
        conn.close()
    return builder.truth()


# -- the large facility (benchmarks) ----------------------------------------------------------

# File sizes of the large facility: (bytes, weight). Sparse files cost no disk blocks.
LARGE_SIZES = [(0, 2), (1_024, 10), (16_384, 20), (262_144, 30), (1_048_576, 20),
               (8_388_608, 12), (67_108_864, 6)]
LARGE_COLUMNS = {
    "experimentergroup": "id name permissions ldap version",
    "experimenter": "id omename firstname lastname email ldap permissions version",
    "groupexperimentermap": "id parent child child_index owner permissions version",
    "session": "id permissions started defaulteventtype timetoidle timetolive uuid node owner",
    "event": "id permissions time experimenter experimentergroup session type",
    "originalfile": "id path name size hash hasher mimetype repo mtime ctime atime "
                    "owner_id group_id creation_id update_id permissions",
    "fileset": "id templateprefix owner_id group_id creation_id update_id permissions",
    "filesetentry": "id fileset originalfile fileset_index clientpath "
                    "owner_id group_id creation_id update_id permissions",
    "job": "id username groupname type message status submitted scheduledfor started finished "
           "owner_id group_id creation_id update_id permissions",
    "uploadjob": "job_id",
    "filesetjoblink": "id parent child parent_index owner_id group_id creation_id update_id permissions",
    "joboriginalfilelink": "id parent child owner_id group_id creation_id update_id permissions",
    "project": "id name owner_id group_id creation_id update_id permissions",
    "dataset": "id name owner_id group_id creation_id update_id permissions",
    "projectdatasetlink": "id parent child owner_id group_id creation_id update_id permissions",
    "image": "id name fileset series acquisitiondate owner_id group_id creation_id update_id permissions",
    "datasetimagelink": "id parent child owner_id group_id creation_id update_id permissions",
    "pixels": "id image image_index sizex sizey sizez sizec sizet dimensionorder pixelstype sha1 "
              "path name repo owner_id group_id creation_id update_id permissions",
    "screen": "id name owner_id group_id creation_id update_id permissions",
    "plate": "id name rows columns owner_id group_id creation_id update_id permissions",
    "screenplatelink": "id parent child owner_id group_id creation_id update_id permissions",
    "well": 'id plate row column owner_id group_id creation_id update_id permissions',
    "wellsample": "id well image well_index owner_id group_id creation_id update_id permissions",
}
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value):
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)


class CopyLoader:
    """Rows spooled per table in temporary files, then COPYed in foreign-key order."""

    def __init__(self, conn):
        self.conn = conn
        self.spools = {}
        self.counts = defaultdict(int)
        self.ids = defaultdict(int)

    def next_id(self, table):
        self.ids[table] += 1
        return self.ids[table]

    def row(self, table, *values):
        spool = self.spools.get(table)
        if spool is None:
            spool = self.spools[table] = tempfile.TemporaryFile("w+", encoding="utf-8")
        spool.write("\t".join(map(_copy_value, values)) + "\n")
        self.counts[table] += 1

    def load(self):
        with self.conn.cursor() as cur:
            for table in TABLE_ORDER:
                spool = self.spools.pop(table, None)
                if spool is None:
                    continue
                spool.seek(0)
                columns = ", ".join(f'"{c}"' for c in LARGE_COLUMNS[table].split())
                cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", spool, size=1 << 20)
                spool.close()
        self.conn.commit()


def _zero_sha1(size, cache={}):
    """SHA-1 of `size` zero bytes: the content of a sparse file (few sizes, cached)."""
    if size not in cache:
        digest, chunk, left = hashlib.sha1(), bytes(1 << 20), size
        while left:
            digest.update(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))
        cache[size] = digest.hexdigest()
    return cache[size]


def _spread(rng, total, parts, minimum=1):
    """`total` split into `parts` counts >= minimum, skewed (a few big ones), exact sum."""
    counts = [minimum] * parts
    extra = total - minimum * parts
    if extra < 0:
        raise ValueError(f"cannot split {total} into {parts} parts of at least {minimum}")
    weights = [rng.paretovariate(1.2) for _ in range(parts)]
    for index in rng.choices(range(parts), weights=weights, k=extra):
        counts[index] += 1
    return counts


class LargeFacility:
    """generate_large(): the same tables as the small facility, bulk-loaded with COPY.

    Simplified on purpose, for speed: one session per user, one event per object
    creation, only the UploadJob (with its import log) per fileset, no Directory rows,
    no thumbnails and no Pixels/ files (FS images need none), no annotations.
    """

    def __init__(self, conn, root, seed, disk):
        self.rng = random.Random(seed)
        self.seed, self.disk = seed, disk
        self.db = CopyLoader(conn)
        self.root = Path(os.path.abspath(root))
        self.data_dir = self.root / "OMERO"
        self.managed_dir = self.data_dir / "ManagedRepository"
        self.repo_uuid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        for sub in ("Pixels", "Files", "Thumbnails", "ManagedRepository"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.db.ids.update(experimenter=1, experimentergroup=2, groupexperimentermap=2, session=1)
        self.clock = dt.datetime(2016, 1, 4, 8, 0)
        self.bytes = 0
        self.size_values = [s for s, _ in LARGE_SIZES]
        self.size_weights = [w for _, w in LARGE_SIZES]

    def tick(self, step):
        """Time moves forward with each object: ids grow with time, as in OMERO."""
        self.clock += dt.timedelta(milliseconds=self.rng.randint(1, 2 * step))
        return self.clock

    def event(self, uid, gid, etype=IMPORT_EVENT):
        eid = self.db.next_id("event")
        when = self.tick(self.step)
        self.db.row("event", eid, -52, when, uid, gid, self.sessions[uid], etype)
        return eid, when

    def details(self, uid, gid, eid):
        return (uid, gid, eid, eid, self.permissions[gid])

    def people(self, n_users, n_groups):
        levels = list(PERMISSIONS.items())
        self.permissions = {1: -52}
        groups = []
        for n in range(n_groups):
            gid = self.db.next_id("experimentergroup")
            name, perms = levels[n % len(levels)]
            self.db.row("experimentergroup", gid, f"Lab {n + 1:02d} ({name})", perms, False, 0)
            self.permissions[gid] = perms
            groups.append(gid)
        firsts = ["Anna", "Ben", "Chloé", "Dario", "Emma", "Femi", "Greta", "Hiro", "Inès", "Jon"]
        lasts = ["Müller", "Smith", "Rossi", "O'Neil", "Tanaka", "Novak", "García", "Berg"]
        self.sessions, self.users = {}, []
        for n in range(n_users):
            uid = self.db.next_id("experimenter")
            self.db.row("experimenter", uid, f"user{n + 1:03d}", firsts[n % len(firsts)],
                        lasts[n % len(lasts)], f"user{n + 1:03d}@bio.example.org", False, 0, 0)
            main = groups[n % n_groups]
            member_of = [main] + ([groups[(n + 1) % n_groups]] if n % 3 == 0 and n_groups > 1 else [])
            for index, gid in enumerate(member_of + [USER_GROUP_ID]):
                self.db.row("groupexperimentermap", self.db.next_id("groupexperimentermap"),
                            gid, uid, index, index == 0 and n < n_groups, -52, 0)
            sid = self.db.next_id("session")
            self.db.row("session", sid, -52, self.clock, "User", 600000, 0,
                        str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), 0, uid)
            self.sessions[uid] = sid
            self.users.append((uid, f"user{n + 1:03d}", main))

    def write_file(self, path, size, when):
        """One repository file as the disk mode says; returns (size, sha1) for the DB."""
        if self.disk == "tiny":
            data = f"{path.name} {self.seed}\n".encode()
            with open(path, "wb") as out:
                out.write(data)
                os.utime(out.fileno(), (epoch(when), epoch(when)))
            return len(data), hashlib.sha1(data).hexdigest()
        if self.disk == "sparse":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, size)
                os.utime(fd, (epoch(when), epoch(when)))
            finally:
                os.close(fd)
        return size, _zero_sha1(size)

    def fileset(self, uid, omename, gid, names, image_names):
        """One FS import: fileset, entries, original files, upload job and its log,
        images and pixels. Returns the image ids."""
        eid, when = self.event(uid, gid)
        prefix = template_prefix(omename, uid, when)
        details = self.details(uid, gid, eid)
        fsid = self.db.next_id("fileset")
        self.db.row("fileset", fsid, prefix, *details)
        folder = self.managed_dir / prefix
        if self.disk != "none":
            folder.mkdir(parents=True, exist_ok=True)
        sizes = self.rng.choices(self.size_values, self.size_weights, k=len(names))
        mtime = when.replace(microsecond=0)
        for index, (name, size) in enumerate(zip(names, sizes)):
            size, digest = self.write_file(folder / name, size, when)
            self.bytes += size
            ofid = self.db.next_id("originalfile")
            self.db.row("originalfile", ofid, prefix, name, size, digest, SHA1_160, FS_MIMETYPE,
                        self.repo_uuid, mtime, mtime, mtime, *details)
            self.db.row("filesetentry", self.db.next_id("filesetentry"), fsid, ofid, index,
                        f"data/{omename}/{name}", *details)
        jid = self.db.next_id("job")
        self.db.row("job", jid, omename, "", "", "", FINISHED, when, when, when, when, *details)
        self.db.row("uploadjob", jid)
        self.db.row("filesetjoblink", self.db.next_id("filesetjoblink"), fsid, jid, 0, *details)
        parent, _, base = prefix.rstrip("/").rpartition("/")
        log = self.managed_dir / parent / (base + ".log")
        size, _ = self.write_file(log, 4_096, when) if self.disk != "none" else (4_096, None)
        self.bytes += size
        ofid = self.db.next_id("originalfile")
        self.db.row("originalfile", ofid, parent + "/", base + ".log", size, None, None,
                    LOG_MIMETYPE, self.repo_uuid, mtime, mtime, mtime, *details)
        self.db.row("joboriginalfilelink", self.db.next_id("joboriginalfilelink"), jid, ofid,
                    *details)
        image_ids = []
        for series, image_name in enumerate(image_names):
            iid = self.db.next_id("image")
            self.db.row("image", iid, image_name, fsid, series, mtime, *details)
            self.db.row("pixels", self.db.next_id("pixels"), iid, 0, 1024, 1024, 1, 1, 1,
                        XYZCT, UINT16, "Foo", prefix, names[0], self.repo_uuid, *details)
            image_ids.append(iid)
        return image_ids

    def build(self, files, filesets, projects, screens):
        n_groups = 5
        n_users = max(8, min(200, projects // 50))
        self.people(n_users, n_groups)
        plates = screens + screens // 4
        project_filesets = filesets - plates
        if project_filesets < max(projects, 1) or files < filesets:
            raise ValueError("need files >= filesets >= projects + plates")
        plate_files = min(int(files * 0.3), files - project_filesets) if plates else 0
        # Time runs from 2016 over about eight years of imports.
        self.step = max(1, int(8 * 365 * 86400 * 1000 / (filesets + projects + plates * 2)))
        self.projects_part(files - plate_files, project_filesets, projects)
        if plates:
            self.screens_part(plate_files, plates, screens)

    def projects_part(self, files, n_filesets, n_projects):
        per_fileset = _spread(self.rng, files, n_filesets)
        datasets = []
        for p in range(n_projects):
            uid, omename, gid = self.users[p % len(self.users)]
            eid, _ = self.event(uid, gid, USER_EVENT)
            pid = self.db.next_id("project")
            self.db.row("project", pid, f"Project {p + 1:05d}", *self.details(uid, gid, eid))
            own = []
            for d in range(1 + p % 3):
                did = self.db.next_id("dataset")
                self.db.row("dataset", did, f"Dataset {d + 1}", *self.details(uid, gid, eid))
                self.db.row("projectdatasetlink", self.db.next_id("projectdatasetlink"), pid, did,
                            *self.details(uid, gid, eid))
                own.append(did)
            datasets.append((uid, omename, gid, own))
        for f, count in enumerate(per_fileset):
            uid, omename, gid, own = datasets[f % n_projects]
            names = [f"img_{f:06d}.ome.tif"] + [f"img_{f:06d}_{k:04d}.tif" for k in range(1, count)]
            series = 2 if count > 1 and f % 10 == 0 else 1
            image_ids = self.fileset(uid, omename, gid, names,
                                     [f"img_{f:06d} [Series {s + 1}]" for s in range(series)])
            did = own[(f // n_projects) % len(own)]
            eid, _ = self.event(uid, gid, USER_EVENT)
            for iid in image_ids:
                self.db.row("datasetimagelink", self.db.next_id("datasetimagelink"), did, iid,
                            *self.details(uid, gid, eid))

    def screens_part(self, files, n_plates, n_screens):
        per_plate = _spread(self.rng, files, n_plates)
        screen_ids = []
        for s in range(n_screens):
            uid, omename, gid = self.users[(s * 7) % len(self.users)]
            eid, _ = self.event(uid, gid, USER_EVENT)
            sid = self.db.next_id("screen")
            self.db.row("screen", sid, f"Screen {s + 1:04d}", *self.details(uid, gid, eid))
            screen_ids.append((sid, uid, omename, gid))
        fields, columns = 4, 24
        for n, count in enumerate(per_plate):
            sid, uid, omename, gid = screen_ids[n % n_screens]
            names = [f"P{n + 1:04d}_{well_name(i // fields // columns, i // fields % columns)}"
                     f"_f{i % fields + 1}.tif" for i in range(count)]
            image_ids = self.fileset(uid, omename, gid, names,
                                     [f"Plate {n + 1} [{name}]" for name in names])
            eid, _ = self.event(uid, gid)
            details = self.details(uid, gid, eid)
            wells = (count + fields - 1) // fields
            plate_id = self.db.next_id("plate")
            self.db.row("plate", plate_id, f"Plate {n + 1:04d}", (wells + columns - 1) // columns,
                        columns, *details)
            self.db.row("screenplatelink", self.db.next_id("screenplatelink"), sid, plate_id,
                        *details)
            well_id = None
            for i, iid in enumerate(image_ids):
                if i % fields == 0:
                    well_id = self.db.next_id("well")
                    w = i // fields
                    self.db.row("well", well_id, plate_id, w // columns, w % columns, *details)
                self.db.row("wellsample", self.db.next_id("wellsample"), well_id, iid,
                            i % fields, *details)


def generate_large(dsn, root, files=1_000_000, filesets=100_000, projects=10_000, screens=500,
                   disk="sparse", seed=1):
    """A big facility for benchmarks, bulk-loaded with COPY. Returns a summary dict.

    files: fileset entries (each fileset also gets an import log); disk: "sparse"
    (files truncated to their size: no blocks used), "tiny" (a few real bytes each, and
    the database says so) or "none" (database only).
    """
    if disk not in ("sparse", "tiny", "none"):
        raise ValueError("disk must be 'sparse', 'tiny' or 'none'")
    started = time.monotonic()
    conn = _connect(dsn)
    try:
        facility = LargeFacility(conn, root, seed, disk)
        facility.build(files, filesets, projects, screens)
        built = time.monotonic()
        with conn.cursor() as cur:
            # Foreign keys are checked per row by triggers; as superuser, skip them for
            # the bulk load (the generator's own structure guarantees them).
            try:
                cur.execute("SET session_replication_role = replica")
            except psycopg2.Error:
                conn.rollback()
        facility.db.load()
        with conn.cursor() as cur:
            cur.execute("RESET session_replication_role")
        conn.commit()
        omerodb.sync_sequences(conn)
        eventlog.log_inserts(conn, bulk=True)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
    finally:
        conn.close()
    counts = dict(sorted(facility.db.counts.items()))
    return {
        "root": str(facility.root), "data_dir": str(facility.data_dir),
        "managed_dir": str(facility.managed_dir), "disk": disk, "seed": seed,
        "files": files, "filesets": counts.get("fileset", 0),
        "projects": counts.get("project", 0), "screens": counts.get("screen", 0),
        "images": counts.get("image", 0), "originalfiles": counts.get("originalfile", 0),
        "bytes": facility.bytes, "rows": counts,
        "seconds_build": round(built - started, 1),
        "seconds": round(time.monotonic() - started, 1),
    }


# -- command line -------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate an OMERO-shaped facility.")
    parser.add_argument("--dsn", required=True, help="libpq DSN of the OMERO-shaped database")
    parser.add_argument("--root", required=True, help="directory for OMERO/ and inplace/")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--truth", help="write the Truth JSON here (small facility)")
    parser.add_argument("--large", action="store_true", help="bulk-load a big facility")
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--filesets", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--screens", type=int, default=500)
    parser.add_argument("--disk", choices=["sparse", "tiny", "none"], default="sparse")
    args = parser.parse_args(argv)
    if args.large:
        summary = generate_large(args.dsn, args.root, files=args.files, filesets=args.filesets,
                                 projects=args.projects, screens=args.screens, disk=args.disk,
                                 seed=args.seed)
        print(json.dumps(summary, indent=1))
        return 0
    started = time.monotonic()
    truth = generate_facility(args.dsn, args.root, seed=args.seed)
    if args.truth:
        truth.save(args.truth)
    totals = truth.collection_totals()
    print(json.dumps({"collections": len(totals),
                      "files": len(truth.all_files()),
                      "bytes": sum(f["size"] for f in truth.all_files()),
                      "seconds": round(time.monotonic() - started, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
