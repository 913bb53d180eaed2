"""Changes to a generated facility, made as OMERO makes them, eventlog rows included.

Each change is one transaction with its own event, like one client call. What OMERO
logs, this logs (testbed.eventlog): INSERT for created rows and UPDATE for changed ones
(Hibernate's listener), UPDATE for the objects a chown or chgrp moves (Chgrp2 publishes
its own rows). Deletes are made as Delete2 makes them, with no eventlog row (its bulk
HQL deletes bypass the listener). docs/eventlog.md cites the OMERO sources.

One compromise: after each change the session asks PostgreSQL to publish its table
statistics at commit (pg_stat_force_next_flush), where OMERO's sessions publish them
within a second or so; the incremental catalogue reads deletions from those
statistics, and a test must not depend on that second.

    changes = FacilityChanges(conn, seed=3)
    changes.apply("import", 7)        # an operation name and a number that picks targets
"""
import datetime as dt
import random
import uuid

from testbed import eventlog
from testbed.generator import FILE_ANNOTATION, LOG_MIMETYPE, SHA1_160, UINT16, XYZCT

OPERATIONS = ("import", "import_shared", "import_orphans", "import_plate", "link_image", "link_dataset",
              "link_plate", "unlink_image", "unlink_dataset", "unlink_plate",
              "delete_fileset", "chown", "chgrp", "attach", "attach_again", "unattach",
              "new_project", "rename", "resize_file", "resize_attachment")
_REPO = "6f2b1c1e-aaaa-4c8e-9a57-5a0e0c0d0e99"  # a managed repository of its own
_ANNOTATED = ("project", "dataset", "image", "screen", "plate", "well")


class FacilityChanges:
    def __init__(self, conn, seed=0):
        self.conn = conn
        self.rng = random.Random(seed)
        self.clock = dt.datetime(2026, 1, 5, 9, 0)
        self.serial = 0
        # Paths unique across instances too (a benchmark adds to a cached facility).
        self.token = uuid.uuid4().hex[:8]

    # -- plumbing --------------------------------------------------------------------------
    def apply(self, operation, pick):
        """Run one operation; `pick` chooses its targets among the rows there are.
        Returns a short description, or None when the facility has nothing to apply it to."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        self.pick = pick
        self.created, self.updated = [], []
        with self.conn.cursor() as cur:
            self.cur = cur
            done = getattr(self, "_" + operation)()
            if done is None:
                self.conn.rollback()
                return None
            for table, ids in self._grouped(self.created):
                eventlog.log(cur, "INSERT", table, ids, self.ev)
            for table, ids in self._grouped(self.updated):
                eventlog.log(cur, "UPDATE", table, ids, self.ev)
            cur.execute("SELECT pg_stat_force_next_flush()")
        self.conn.commit()
        return done

    def link(self, table, parent, child):
        """One link between given objects (a benchmark's changes: no picking among a
        million rows), made and logged as apply() makes them."""
        parents = {"datasetimagelink": "dataset", "projectdatasetlink": "project",
                   "screenplatelink": "screen"}[table]
        self.created, self.updated = [], []
        with self.conn.cursor() as cur:
            self.cur = cur
            self._as_owner_of(parents, parent)
            self._insert(table, parent=parent, child=child, **self.details)
            for name, ids in self._grouped(self.created):
                eventlog.log(cur, "INSERT", name, ids, self.ev)
        self.conn.commit()

    @staticmethod
    def _grouped(rows):
        order, ids = [], {}
        for table, oid in rows:
            if table not in ids:
                order.append(table)
                ids[table] = []
            ids[table].append(oid)
        return [(t, ids[t]) for t in order]

    def _one(self, sql, params=()):
        self.cur.execute(sql, params)
        rows = self.cur.fetchall()
        return rows[self.pick % len(rows)] if rows else None

    def _event(self, uid, gid):
        self.clock += dt.timedelta(seconds=self.rng.randint(5, 600))
        self.cur.execute("SELECT id FROM session WHERE owner = %s ORDER BY id LIMIT 1", [uid])
        row = self.cur.fetchone()
        sid = row[0] if row else self._insert(
            "session", permissions=-52, started=self.clock, defaulteventtype="User",
            timetoidle=600000, timetolive=0, uuid=str(uuid.UUID(int=self.rng.getrandbits(128))),
            node=0, owner=uid, version=0, logged=False)
        self.cur.execute("SELECT ome_nextval('seq_event')")
        self.ev = self.cur.fetchone()[0]
        self.cur.execute("INSERT INTO event (id, permissions, time, experimenter,"
                         " experimentergroup, session, type) VALUES (%s, -52, %s, %s, %s, %s, 4)",
                         [self.ev, self.clock, uid, gid, sid])
        self.details = {"owner_id": uid, "group_id": gid, "creation_id": self.ev,
                        "update_id": self.ev, "permissions": -40, "version": 0}

    def _insert(self, table, logged=True, **cols):
        if table not in ("uploadjob",):
            self.cur.execute("SELECT ome_nextval(%s)", [f"seq_{table}"])
            cols = {"id": self.cur.fetchone()[0], **cols}
        names = ", ".join(f'"{c}"' for c in cols)
        self.cur.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(cols))})",
                         list(cols.values()))
        if logged and "id" in cols:
            self.created.append((table, cols["id"]))
        return cols.get("id")

    def _update(self, table, oid, **cols):
        sets = ", ".join(f'"{c}" = %s' for c in cols)
        self.cur.execute(f"UPDATE {table} SET {sets}, update_id = %s WHERE id = %s",
                         list(cols.values()) + [self.ev, oid])
        self.updated.append((table, oid))

    def _someone(self):
        """(user, group): a member of one of the lab groups."""
        return self._one("SELECT child, parent FROM groupexperimentermap"
                         " WHERE parent > 2 AND child > 1 ORDER BY id")

    def _as_owner_of(self, table, oid):
        self.cur.execute(f"SELECT owner_id, group_id FROM {table} WHERE id = %s", [oid])
        self._event(*self.cur.fetchone())

    # -- imports -------------------------------------------------------------------------------
    def _fileset(self, n_files, n_images, name):
        """An FS import's rows: fileset, entries, files, upload job and log, images with
        pixels and a thumbnail. Returns the image ids."""
        self.serial += 1
        prefix = (f"changes_{self.details['owner_id']}/{self.clock:%Y-%m/%d/%H-%M-%S}"
                  f".{self.serial:03d}-{self.token}/")
        fsid = self._insert("fileset", templateprefix=prefix, **self.details)
        for index in range(n_files):
            size = self.rng.choice([0, 1_000, 250_000, 4_000_000])
            ofid = self._insert("originalfile", path=prefix, name=f"{name}_{index}.tif",
                                size=size, hash=f"{self.rng.getrandbits(160):040x}",
                                hasher=SHA1_160, mimetype="image/tiff", repo=_REPO,
                                mtime=self.clock, **self.details)
            self._insert("filesetentry", fileset=fsid, originalfile=ofid, fileset_index=index,
                         clientpath=f"data/{name}_{index}.tif", **self.details)
        jid = self._insert("job", username="u", groupname="g", type="", message="", status=8,
                           submitted=self.clock, scheduledfor=self.clock, **self.details)
        self._insert("uploadjob", job_id=jid)
        self._insert("filesetjoblink", parent=fsid, child=jid, parent_index=0, **self.details)
        log = self._insert("originalfile", path=prefix.rstrip("/").rpartition("/")[0] + "/",
                           name=prefix.rstrip("/").rpartition("/")[2] + ".log",
                           size=self.rng.randint(2_000, 9_000), mimetype=LOG_MIMETYPE,
                           repo=_REPO, mtime=self.clock, **self.details)
        self._insert("joboriginalfilelink", parent=jid, child=log, **self.details)
        images = []
        for series in range(n_images):
            iid = self._insert("image", name=f"{name} [{series}]", fileset=fsid, series=series,
                               **self.details)
            pid = self._insert("pixels", image=iid, image_index=0, sizex=512, sizey=512, sizez=1,
                               sizec=1, sizet=1, dimensionorder=XYZCT, pixelstype=UINT16,
                               sha1="Foo", path=prefix, name=f"{name}_0.tif", repo=_REPO,
                               **self.details)
            self._insert("thumbnail", pixels=pid, mimetype="image/jpeg", sizex=96, sizey=96,
                         **self.details)
            images.append(iid)
        return images

    def _import(self, shared=False):
        row = self._someone()
        if row is None:
            return None
        self._event(*row)
        datasets = self._pick_rows("SELECT id FROM dataset ORDER BY id", 2)
        if not datasets:
            return None
        n_images = 2 if shared else self.rng.randint(1, 2)
        images = self._fileset(self.rng.randint(1, 4), n_images, f"imp{self.serial}")
        targets = datasets if shared else datasets[:1]
        for n, iid in enumerate(images):
            self._insert("datasetimagelink", parent=targets[n % len(targets)], child=iid,
                         **self.details)
        return f"import of {len(images)} image(s) into dataset(s) {targets}"

    def import_into(self, dataset, files):
        """One import of `files` files and one image into a given dataset (a benchmark's
        changes), made and logged as apply() makes them. Returns the image id."""
        self.created, self.updated, self.pick = [], [], 0
        with self.conn.cursor() as cur:
            self.cur = cur
            self._as_owner_of("dataset", dataset)
            images = self._fileset(files, 1, f"bench{self.serial}")
            self._insert("datasetimagelink", parent=dataset, child=images[0], **self.details)
            for name, ids in self._grouped(self.created):
                eventlog.log(cur, "INSERT", name, ids, self.ev)
        self.conn.commit()
        return images[0]

    def _import_shared(self):
        return self._import(shared=True)

    def _import_orphans(self):
        """An import into no dataset: two images of one fileset, orphaned until linked."""
        row = self._someone()
        if row is None:
            return None
        self._event(*row)
        images = self._fileset(self.rng.randint(1, 3), 2, f"orphan{self.serial}")
        return f"import of orphaned images {images}"

    def _import_plate(self):
        screen = self._one("SELECT id, owner_id, group_id FROM screen ORDER BY id")
        if screen is None:
            return None
        self._event(screen[1], screen[2])
        n = self.rng.randint(1, 3)
        images = self._fileset(n + 1, n, f"plate{self.serial}")
        plate = self._insert("plate", name=f"Plate {self.serial}", **self.details)
        for column, iid in enumerate(images):
            well = self._insert("well", plate=plate, row=0, column=column, **self.details)
            self._insert("wellsample", well=well, image=iid, well_index=0, **self.details)
        self._insert("screenplatelink", parent=screen[0], child=plate, **self.details)
        return f"plate {plate} of {n} well(s) into screen {screen[0]}"

    def _pick_rows(self, sql, count):
        self.cur.execute(sql)
        rows = [r[0] for r in self.cur.fetchall()]
        if not rows:
            return []
        start = self.pick % len(rows)
        return [rows[(start + k * 7) % len(rows)] for k in range(count)]

    # -- links ---------------------------------------------------------------------------------
    def _link(self, table, parents, children):
        parent = self._pick_rows(f"SELECT id FROM {parents} ORDER BY id", 1)
        self.pick //= 3
        child = self._pick_rows(f"SELECT id FROM {children} ORDER BY id", 1)
        if not parent or not child:
            return None
        self.cur.execute(f"SELECT 1 FROM {table} WHERE parent = %s AND child = %s",
                         [parent[0], child[0]])
        if self.cur.fetchone():
            return None
        self._as_owner_of(parents, parent[0])
        self._insert(table, parent=parent[0], child=child[0], **self.details)
        return f"{table} {parent[0]} -> {child[0]}"

    def _link_image(self):
        return self._link("datasetimagelink", "dataset", "image")

    def _link_dataset(self):
        return self._link("projectdatasetlink", "project", "dataset")

    def _link_plate(self):
        return self._link("screenplatelink", "screen", "plate")

    def _unlink(self, table):
        row = self._one(f"SELECT id, parent, child FROM {table} ORDER BY id")
        if row is None:
            return None
        self.ev = None
        self.cur.execute(f"DELETE FROM {table} WHERE id = %s", [row[0]])  # Delete2: no log
        return f"unlinked {table} {row[1]} -> {row[2]}"

    def _unlink_image(self):
        return self._unlink("datasetimagelink")

    def _unlink_dataset(self):
        return self._unlink("projectdatasetlink")

    def _unlink_plate(self):
        return self._unlink("screenplatelink")

    def _delete_fileset(self):
        """Delete2 of a fileset: its images and everything under them, no eventlog row."""
        row = self._one("SELECT id FROM fileset ORDER BY id")
        if row is None:
            return None
        fsid = row[0]
        c = self.cur
        c.execute("SELECT id FROM image WHERE fileset = %s", [fsid])
        images = [r[0] for r in c.fetchall()]
        c.execute("SELECT id FROM pixels WHERE image = ANY(%s)", [images])
        pixels = [r[0] for r in c.fetchall()]
        c.execute("SELECT child FROM filesetjoblink WHERE parent = %s", [fsid])
        jobs = [r[0] for r in c.fetchall()]
        c.execute("SELECT originalfile FROM filesetentry WHERE fileset = %s UNION"
                  " SELECT child FROM joboriginalfilelink WHERE parent = ANY(%s)", [fsid, jobs])
        files = [r[0] for r in c.fetchall()]
        c.execute("SELECT DISTINCT well FROM wellsample WHERE image = ANY(%s)", [images])
        for sql, ids in (
                ("DELETE FROM imageannotationlink WHERE parent = ANY(%s)", images),
                ("DELETE FROM datasetimagelink WHERE child = ANY(%s)", images),
                ("DELETE FROM wellsample WHERE image = ANY(%s)", images),
                ("DELETE FROM thumbnail WHERE pixels = ANY(%s)", pixels),
                ("DELETE FROM pixelsoriginalfilemap WHERE child = ANY(%s)", pixels),
                ("DELETE FROM pixels WHERE id = ANY(%s)", pixels),
                ("DELETE FROM image WHERE id = ANY(%s)", images),
                ("DELETE FROM filesetentry WHERE fileset = ANY(%s)", [fsid]),
                ("DELETE FROM joboriginalfilelink WHERE parent = ANY(%s)", jobs),
                ("DELETE FROM filesetjoblink WHERE parent = ANY(%s)", [fsid]),
                *((f"DELETE FROM {sub} WHERE job_id = ANY(%s)", jobs)
                  for sub in ("uploadjob", "metadataimportjob", "pixeldatajob",
                              "thumbnailgenerationjob", "indexingjob")),
                ("DELETE FROM job WHERE id = ANY(%s)", jobs),
                ("DELETE FROM fileset WHERE id = ANY(%s)", [fsid]),
                ("DELETE FROM originalfile WHERE id = ANY(%s) AND NOT EXISTS"
                 " (SELECT 1 FROM annotation a WHERE a.\"file\" = originalfile.id)", files)):
            c.execute(sql, [ids])
        self.ev = None
        return f"deleted fileset {fsid} ({len(images)} image(s))"

    # -- owners and groups ---------------------------------------------------------------------
    def _move(self, column):
        project = self._one("SELECT id FROM project ORDER BY id")
        who = self._someone()
        if project is None or who is None:
            return None
        self._event(*who)
        value = who[0] if column == "owner_id" else who[1]
        self.cur.execute("SELECT child FROM projectdatasetlink WHERE parent = %s", [project[0]])
        datasets = [r[0] for r in self.cur.fetchall()]
        self._update("project", project[0], **{column: value})
        for did in datasets:
            self._update("dataset", did, **{column: value})
        return f"{column} of project {project[0]} -> {value}"

    def _chown(self):
        return self._move("owner_id")

    def _chgrp(self):
        return self._move("group_id")

    # -- attachments ---------------------------------------------------------------------------
    def _target(self):
        kind = _ANNOTATED[self.pick % len(_ANNOTATED)]
        self.pick //= len(_ANNOTATED)
        row = self._one(f"SELECT id, owner_id, group_id FROM {kind} ORDER BY id")
        return (kind, row) if row else (kind, None)

    def _attach(self):
        kind, row = self._target()
        if row is None:
            return None
        self._event(row[1], row[2])
        self.serial += 1
        ofid = self._insert("originalfile", path="uploads/",
                            name=f"notes{self.serial}-{self.token}.pdf",
                            size=self.rng.randint(100, 90_000),
                            hash=f"{self.rng.getrandbits(160):040x}", hasher=SHA1_160,
                            mimetype="application/pdf", mtime=self.clock, **self.details)
        ann = self._insert("annotation", discriminator=FILE_ANNOTATION, file=ofid,
                           **self.details)
        self._insert(f"{kind}annotationlink", parent=row[0], child=ann, **self.details)
        return f"attached file {ofid} to {kind} {row[0]}"

    def _attach_again(self):
        """An existing attachment linked to one more object: a shared file."""
        ann = self._one("SELECT id FROM annotation WHERE \"file\" IS NOT NULL ORDER BY id")
        kind, row = self._target()
        if ann is None or row is None:
            return None
        self.cur.execute(f"SELECT 1 FROM {kind}annotationlink WHERE parent = %s AND child = %s",
                         [row[0], ann[0]])
        if self.cur.fetchone():
            return None
        self._event(row[1], row[2])
        self._insert(f"{kind}annotationlink", parent=row[0], child=ann[0], **self.details)
        return f"attached annotation {ann[0]} to {kind} {row[0]} too"

    def _unattach(self):
        kind = _ANNOTATED[self.pick % len(_ANNOTATED)]
        self.pick //= len(_ANNOTATED)
        return self._unlink(f"{kind}annotationlink")

    # -- containers and files ------------------------------------------------------------------
    def _new_project(self):
        who = self._someone()
        if who is None:
            return None
        self._event(*who)
        self.serial += 1
        pid = self._insert("project", name=f"New project {self.serial}", **self.details)
        did = self._insert("dataset", name=f"New dataset {self.serial}", **self.details)
        self._insert("projectdatasetlink", parent=pid, child=did, **self.details)
        return f"project {pid} with dataset {did}"

    def _rename(self):
        kind = ("project", "screen")[self.pick % 2]
        row = self._one(f"SELECT id FROM {kind} ORDER BY id")
        if row is None:
            return None
        self._as_owner_of(kind, row[0])
        self.serial += 1
        self._update(kind, row[0], name=f"Renamed {self.serial}")
        return f"renamed {kind} {row[0]}"

    def _resize_attachment(self):
        """An attached file whose recorded size changes (a new version uploaded)."""
        row = self._one("SELECT \"file\" FROM annotation WHERE \"file\" IS NOT NULL ORDER BY id")
        if row is None:
            return None
        self._as_owner_of("originalfile", row[0])
        self._update("originalfile", row[0], size=self.rng.randint(1, 10_000_000))
        return f"resized attached file {row[0]}"

    def _resize_file(self):
        """A file whose recorded size changes (its upload completed, say)."""
        row = self._one("SELECT id FROM originalfile WHERE repo IS NOT NULL"
                        " AND mimetype <> 'Directory' ORDER BY id")
        if row is None:
            return None
        self._as_owner_of("originalfile", row[0])
        self._update("originalfile", row[0], size=self.rng.randint(1, 10_000_000))
        return f"resized file {row[0]}"

    # -- a day's work at the facility (tests/scenarios) -----------------------------------
    def import_new_project(self, owner, group, managed_dir, when, n_files=2):
        """A user makes a Project with a Dataset and imports `n_files` files into it at
        `when`, as OMERO.insight does: the rows as _fileset makes them, and the files
        written into the managed repository with OMERO's SHA-1 of their bytes (an
        archive checks them). Returns the Project's id."""
        import hashlib
        import os

        self.created, self.updated, self.pick = [], [], 0
        # OMERO's timestamps are UTC without a zone; _event moves the clock on by up to 10 min
        self.clock = when.astimezone(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=15)
        with self.conn.cursor() as cur:
            self.cur = cur
            self._event(owner, group)
            self.serial += 1
            pid = self._insert("project", name=f"Import {when:%Y-%m-%d %H:%M}", **self.details)
            did = self._insert("dataset", name=f"Day {self.serial}", **self.details)
            self._insert("projectdatasetlink", parent=pid, child=did, **self.details)
            [image] = self._fileset(n_files, 1, f"day{self.serial}")
            self._insert("datasetimagelink", parent=did, child=image, **self.details)
            files = [oid for table, oid in self.created if table == "originalfile"]
            cur.execute("SELECT id, path, name, size FROM originalfile WHERE id = ANY(%s)",
                        [files])
            for oid, path, name, size in cur.fetchall():
                data = self.rng.randbytes(size)
                target = os.path.join(managed_dir, path.lstrip("/"), name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as out:
                    out.write(data)
                stamp = self.clock.replace(tzinfo=dt.timezone.utc).timestamp()
                os.utime(target, (stamp, stamp))
                cur.execute("UPDATE originalfile SET hash = %s, hasher = %s WHERE id = %s",
                            [hashlib.sha1(data).hexdigest(), SHA1_160, oid])
            for table, ids in self._grouped(self.created):
                eventlog.log(cur, "INSERT", table, ids, self.ev)
            cur.execute("SELECT pg_stat_force_next_flush()")
        self.conn.commit()
        return pid
