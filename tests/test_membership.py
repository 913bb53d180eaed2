"""Who holds what (catalog/membership.py), on hand-made situations in the OMERO-shaped
database: every path from a file up to a Project or Screen, and every path that ends
outside them, each with the key a purge shows. Each holder set is asserted exactly, so
that a branch of the walk removed fails a test here.
"""
import itertools

import psycopg2
import pytest

from omero_storagemanager.catalog import membership
from omero_storagemanager.catalog.inventory import (ATTACHMENT, FILESET_ENTRY, IMPORT_LOG,
                                                    ORIGINAL, PIXELS, PYRAMID, FileRecord,
                                                    InventoryReader)
from omero_storagemanager.catalog.membership import (collection_keys, collections_holding,
                                                     holders, is_collection_key,
                                                     object_holders, other_holders)
from omero_storagemanager.catalog.objects import holding_collections, sharing_collections
from omero_storagemanager.catalog.paths import RepositoryPaths
from omero_storagemanager.catalog.totals import collection_figures
from omero_storagemanager.engine.figures import figures_from_inventory

FILE_ANNOTATION = "/type/OriginalFile/"
FINISHED = 8  # jobstatus
DETAILS = {"owner_id": 0, "group_id": 0, "creation_id": 0, "update_id": 0}


class Bed:
    """Rows inserted one by one, each with the details block OMERO requires."""

    def __init__(self, conn):
        self.conn = conn
        self.ids = itertools.count(10_000)

    def add(self, table, **cols):
        cols = {"id": next(self.ids), "permissions": -120, **cols}
        if table not in ("importjob",):
            cols.update(DETAILS)
        names = ", ".join(f'"{c}"' for c in cols)
        with self.conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(cols))})",
                        list(cols.values()))
        return cols["id"]

    def link(self, table, parent, child):
        return self.add(table, parent=parent, child=child)

    def project(self, *datasets):
        pid = self.add("project", name="p")
        for d in datasets:
            self.link("projectdatasetlink", pid, d)
        return pid

    def dataset(self, *images):
        did = self.add("dataset", name="d")
        for i in images:
            self.link("datasetimagelink", did, i)
        return did

    def screen(self, *plates):
        sid = self.add("screen", name="s")
        for p in plates:
            self.link("screenplatelink", sid, p)
        return sid

    def plate(self, *images):
        """A plate with one well holding these images; returns (plate, well)."""
        pid = self.add("plate", name="pl")
        wid = self.add("well", plate=pid, row=0, column=0)
        for n, i in enumerate(images):
            self.add("wellsample", well=wid, image=i, well_index=n)
        return pid, wid

    def originalfile(self, name="f"):
        # (repo, path, name) is unique in OMERO
        return self.add("originalfile", name=f"{name}{next(self.ids)}", path="x/", size=10,
                        repo="r")

    def fileset(self, images=1):
        """A fileset with one entry and an import log, and its images:
        (fileset, entry file, log file, [images])."""
        fid = self.add("fileset", templateprefix="u/")
        entry, log = self.originalfile("entry"), self.originalfile("log")
        self.add("filesetentry", fileset=fid, originalfile=entry, fileset_index=0,
                 clientpath="c")
        job = self.add("job", username="u", groupname="g", type="", message="",
                       status=FINISHED, submitted="2020-01-01", scheduledfor="2020-01-01")
        self.add("filesetjoblink", parent=fid, child=job, parent_index=0)
        self.add("joboriginalfilelink", parent=job, child=log)
        imgs = [self.add("image", name="i", fileset=fid) for _ in range(images)]
        return fid, entry, log, imgs

    def legacy_image(self):
        """An OMERO 4 image: (image, pixels, archived original file)."""
        iid = self.add("image", name="i4")
        pid = self.add("pixels", image=iid, image_index=0, sizex=2, sizey=2, sizez=1,
                       sizec=1, sizet=1, dimensionorder=1, pixelstype=5, sha1="")
        original = self.originalfile("orig")
        self.add("pixelsoriginalfilemap", parent=original, child=pid)
        return iid, pid, original

    def attach(self, *targets, ofid=None):
        """A FileAnnotation on these (type, id) targets: (annotation, its file)."""
        ofid = ofid or self.originalfile("att")
        ann = self.add("annotation", discriminator=FILE_ANNOTATION, file=ofid)
        for otype, oid in targets:
            self.link(f"{otype}annotationlink", oid, ann)
        return ann, ofid


@pytest.fixture(scope="module")
def writer(omero_db):
    conn = psycopg2.connect(omero_db.dsn)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def bed(writer):
    return Bed(writer)


@pytest.fixture
def conn(omero_db):
    """A read-only catalog connection, as the app opens them; fresh for each test, so
    that tables a test creates are seen."""
    conn = psycopg2.connect(omero_db.dsn)
    conn.set_session(readonly=True, autocommit=True)
    yield conn
    conn.close()


def P(i):
    return f"Project:{i}"


def S(i):
    return f"Screen:{i}"


def entry_record(fileset, ofid):
    return FileRecord(f"/m/{ofid}", FILESET_ENTRY, 10, originalfile_id=ofid, fileset_id=fileset)


# -- Project / Dataset / Image / Fileset -------------------------------------------------

def test_a_dataset_in_two_projects_holds_its_fileset_for_both(bed, conn):
    fileset, entry, log, (image,) = bed.fileset()
    d = bed.dataset(image)
    p1, p2 = bed.project(d), bed.project(d)
    held = holders(conn, originalfile_ids=[entry, log], fileset_ids=[fileset],
                   image_ids=[image])
    assert held.filesets == {fileset: {P(p1), P(p2)}}
    # The entry through filesetentry, the import log through its job.
    assert held.files == {entry: {P(p1), P(p2)}, log: {P(p1), P(p2)}}
    assert held.images == {image: {P(p1), P(p2)}}
    records = [entry_record(fileset, entry),
               FileRecord("/m/log", IMPORT_LOG, 10, originalfile_id=log, fileset_id=fileset)]
    assert other_holders(conn, records, P(p1)) == {"/m/%d" % entry: [P(p2)], "/m/log": [P(p2)]}
    assert other_holders(conn, records, {P(p1), P(p2)}) == {"/m/%d" % entry: [], "/m/log": []}
    assert collections_holding(conn, "dataset", d) == [("project", p1), ("project", p2)]
    assert holding_collections(conn, "image", image) == [("project", p1), ("project", p2)]


def test_a_shared_fileset_with_an_image_in_an_orphan_dataset(bed, conn):
    fileset, entry, log, (inside, outside) = bed.fileset(images=2)
    p = bed.project(bed.dataset(inside))
    orphan = bed.dataset(outside)
    expected = {P(p), f"Dataset:{orphan} (in no Project)"}
    assert holders(conn, fileset_ids=[fileset]).filesets[fileset] == expected
    assert holders(conn, originalfile_ids=[entry]).files[entry] == expected
    assert object_holders(conn, "dataset", [orphan]) == {
        orphan: {f"Dataset:{orphan} (in no Project)"}}
    assert collections_holding(conn, "dataset", orphan) == []
    # The inventory names the orphan holder (a purge must see it) ...
    inventory = InventoryReader(conn, RepositoryPaths("/d", "/m")).read("project", p)
    assert {f.originalfile_id: f.shared_with for f in inventory.files} == {
        entry: [f"Dataset:{orphan} (in no Project)"], log: [f"Dataset:{orphan} (in no Project)"]}
    # ... but sharing between collections, which the scan's figures count, is none.
    figures = figures_from_inventory(inventory, "catalog")
    assert (figures.shared_bytes, figures.shared_filesets) == (0, 0)
    assert sharing_collections(conn, "project", p) == []


def test_an_image_in_no_dataset_and_no_well_is_an_orphaned_holder(bed, conn):
    fileset, entry, _, (inside, orphan) = bed.fileset(images=2)
    p = bed.project(bed.dataset(inside))
    assert holders(conn, fileset_ids=[fileset]).filesets[fileset] == {
        P(p), f"Image:{orphan} (orphaned)"}
    assert holders(conn, image_ids=[orphan]).images[orphan] == {f"Image:{orphan} (orphaned)"}
    # An image in a well is no orphan.
    in_well = bed.add("image", name="w")
    plate, _ = bed.plate(in_well)
    assert holders(conn, image_ids=[in_well]).images[in_well] == {
        f"Plate:{plate} (in no Screen)"}


def test_other_collections_sharing_a_fileset_are_named_and_counted(bed, conn):
    fileset, entry, log, (a, b) = bed.fileset(images=2)
    p1, p2 = bed.project(bed.dataset(a)), bed.project(bed.dataset(b))
    assert sharing_collections(conn, "project", p1) == [P(p2)]
    inventory = InventoryReader(conn, RepositoryPaths("/d", "/m")).read("project", p1)
    assert {f.originalfile_id: f.shared_with for f in inventory.files} == {
        entry: [P(p2)], log: [P(p2)]}
    assert figures_from_inventory(inventory, "catalog").shared_filesets == 1


# -- Screen / Plate / Well / WellSample, OMERO 4 pixels and originals ---------------------

def test_a_plate_in_two_screens_holds_pixels_pyramids_and_originals_for_both(bed, conn):
    image, pixels, original = bed.legacy_image()
    plate, well = bed.plate(image)
    s1, s2 = bed.screen(plate), bed.screen(plate)
    held = holders(conn, originalfile_ids=[original], pixels_ids=[pixels])
    assert held.pixels == {pixels: {S(s1), S(s2)}}
    assert held.files == {original: {S(s1), S(s2)}}
    records = [FileRecord("/d/Pixels/x", PIXELS, 4, pixels_id=pixels),
               FileRecord("/d/Pixels/x_pyramid", PYRAMID, None, pixels_id=pixels),
               FileRecord("/d/Files/o", ORIGINAL, 10, originalfile_id=original,
                          pixels_id=pixels)]
    assert other_holders(conn, records, S(s1)) == {r.path: [S(s2)] for r in records}
    assert collections_holding(conn, "plate", plate) == [("screen", s1), ("screen", s2)]
    assert collections_holding(conn, "well", well) == [("screen", s1), ("screen", s2)]
    inventory = InventoryReader(conn, RepositoryPaths("/d", "/m")).read("screen", s1)
    assert inventory.pixels_shared_with == {pixels: [S(s2)]}
    assert sorted((f.kind, f.shared_with) for f in inventory.files) == [
        (ORIGINAL, [S(s2)]), (PIXELS, [S(s2)])]


def test_a_plate_in_no_screen_is_an_orphan_holder(bed, conn):
    image, pixels, original = bed.legacy_image()
    plate, well = bed.plate(image)
    expected = {f"Plate:{plate} (in no Screen)"}
    held = holders(conn, originalfile_ids=[original], pixels_ids=[pixels])
    assert (held.pixels[pixels], held.files[original]) == (expected, expected)
    assert object_holders(conn, "well", [well]) == {well: expected}
    assert collections_holding(conn, "plate", plate) == []


def test_collections_hold_themselves_only_when_they_exist(bed, conn):
    p, s = bed.project(), bed.screen()
    assert object_holders(conn, "project", [p, 999_999]) == {p: {P(p)}, 999_999: set()}
    assert collections_holding(conn, "screen", s) == [("screen", s)]
    assert collections_holding(conn, "screen", 999_999) == []


# -- file annotations ---------------------------------------------------------------------

def test_file_annotations_on_collections_and_everything_below_them(bed, conn):
    fileset, _, _, (image,) = bed.fileset()
    d = bed.dataset(image)
    p1, p2 = bed.project(d), bed.project(d)
    i4, _, _ = bed.legacy_image()
    plate, well = bed.plate(i4)
    s1, s2 = bed.screen(plate), bed.screen(plate)
    cases = {
        ("project", p1): {P(p1)},
        ("dataset", d): {P(p1), P(p2)},
        ("image", image): {P(p1), P(p2)},
        ("screen", s1): {S(s1)},
        ("plate", plate): {S(s1), S(s2)},
        ("well", well): {S(s1), S(s2)},
        ("image", i4): {S(s1), S(s2)},
    }
    for target, expected in cases.items():
        _, ofid = bed.attach(target)
        assert holders(conn, originalfile_ids=[ofid]).files == {ofid: expected}, target


def test_file_annotations_outside_every_collection_name_their_object(bed, conn):
    fileset, _, _, (inside, orphan_image) = bed.fileset(images=2)
    p = bed.project(bed.dataset(inside))
    orphan_dataset = bed.dataset()
    i4, _, _ = bed.legacy_image()
    orphan_plate, orphan_well = bed.plate(i4)
    cases = {
        ("dataset", orphan_dataset): f"on Dataset:{orphan_dataset}",
        ("image", orphan_image): f"on Image:{orphan_image}",
        ("plate", orphan_plate): f"on Plate:{orphan_plate}",
        ("well", orphan_well): f"on Well:{orphan_well}",
        ("image", i4): f"on Image:{i4}",
        # No collection lists the attachments of a fileset, though its images are in one.
        ("fileset", fileset): f"on Fileset:{fileset}",
    }
    for target, where in cases.items():
        ann, ofid = bed.attach(target)
        assert holders(conn, originalfile_ids=[ofid]).files == {
            ofid: {f"FileAnnotation:{ann} {where}"}}, target
    # Attached to the Project and to the orphan Dataset: both hold it.
    ann, ofid = bed.attach(("project", p), ("dataset", orphan_dataset))
    assert holders(conn, originalfile_ids=[ofid]).files[ofid] == {
        P(p), f"FileAnnotation:{ann} on Dataset:{orphan_dataset}"}
    # An image both in the Project and in an orphan Dataset: the orphan path holds too.
    bed.link("datasetimagelink", orphan_dataset, inside)
    ann, ofid = bed.attach(("image", inside))
    assert holders(conn, originalfile_ids=[ofid]).files[ofid] == {
        P(p), f"FileAnnotation:{ann} on Image:{inside}"}


def test_a_file_annotation_linked_to_nothing_still_holds_its_file(bed, conn):
    p = bed.project()
    ann, ofid = bed.attach(("project", p))
    lone = bed.add("annotation", discriminator=FILE_ANNOTATION, file=ofid)
    assert holders(conn, originalfile_ids=[ofid]).files[ofid] == {
        P(p), f"FileAnnotation:{lone} (on no object)"}
    record = FileRecord("/d/Files/a", ATTACHMENT, 10, originalfile_id=ofid)
    assert other_holders(conn, [record], P(p)) == {
        "/d/Files/a": [f"FileAnnotation:{lone} (on no object)"]}


def test_links_from_tables_the_test_bed_lacks_are_followed_when_they_exist(bed, writer,
                                                                          omero_db):
    p = bed.project()
    ann, ofid = bed.attach(("project", p))
    with writer.cursor() as cur:
        cur.execute("CREATE TABLE roiannotationlink (LIKE projectannotationlink)")
    try:
        bed.link("roiannotationlink", 77, ann)
        fresh = psycopg2.connect(omero_db.dsn)
        fresh.set_session(readonly=True, autocommit=True)
        try:
            assert holders(fresh, originalfile_ids=[ofid]).files[ofid] == {
                P(p), f"FileAnnotation:{ann} on Roi:77"}
        finally:
            fresh.close()
    finally:
        with writer.cursor() as cur:
            cur.execute("DROP TABLE roiannotationlink")


def test_a_file_in_several_roles_is_held_along_each_of_them(bed, conn):
    """An entry of a fileset that is also a FileAnnotation's file, elsewhere."""
    fileset, entry, _, (image,) = bed.fileset()
    p = bed.project(bed.dataset(image))
    s = bed.screen()
    bed.attach(("screen", s), ofid=entry)
    record = entry_record(fileset, entry)
    assert other_holders(conn, [record], P(p)) == {record.path: [S(s)]}
    # The inventory asks entries by their fileset only (a whole collection's files).
    assert other_holders(conn, [record], P(p), every_role=False) == {record.path: []}


# -- the down walk: what a collection holds, and the two walks agree ----------------------

def test_the_down_walk_lists_attachments_on_everything_below_a_collection(bed, conn):
    _, _, _, (image,) = bed.fileset()
    d = bed.dataset(image)
    p = bed.project(d)
    i4, _, _ = bed.legacy_image()
    plate, well = bed.plate(i4)
    s = bed.screen(plate)
    mine = {"project": {bed.attach(("project", p))[1], bed.attach(("dataset", d))[1],
                        bed.attach(("image", image))[1]},
            "screen": {bed.attach(("screen", s))[1], bed.attach(("plate", plate))[1],
                       bed.attach(("well", well))[1], bed.attach(("image", i4))[1]}}
    bed.attach(("dataset", bed.dataset()))  # on nothing of theirs
    reader = InventoryReader(conn, RepositoryPaths("/d", "/m"))
    figures = collection_figures(conn)
    for kind, cid in (("project", p), ("screen", s)):
        listed = {f.originalfile_id for f in reader.read(kind, cid).files if f.kind == ATTACHMENT}
        assert listed == mine[kind], kind
        streamed = {f.originalfile_id for chunk in reader.iter_files(kind, cid)
                    for f in chunk if f.kind == ATTACHMENT}
        assert streamed == mine[kind], kind
        attachments = figures[(kind, cid)].files - len(
            [f for f in reader.read(kind, cid).files if f.kind != ATTACHMENT])
        assert attachments == len(mine[kind]), kind
        # The up walk names the collection for each file its down walk lists.
        held = holders(conn, originalfile_ids=mine[kind]).files
        assert all(f"{kind.capitalize()}:{cid}" in held[f] for f in mine[kind]), kind


# -- the purge's batch check and the helpers ------------------------------------------------

class Counting:
    """A connection whose cursors count the statements they run."""

    def __init__(self, conn):
        self.conn, self.statements = conn, 0

    def cursor(self, *args, **kwargs):
        outer, cur = self, self.conn.cursor(*args, **kwargs)

        class Cursor:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                cur.close()

            def execute(self, *a):
                outer.statements += 1
                return cur.execute(*a)

            def __getattr__(self, name):
                return getattr(cur, name)
        return Cursor()


def test_a_batch_of_256_files_is_one_statement(bed, conn):
    fileset, entry, log, (image,) = bed.fileset()
    p1 = bed.project(bed.dataset(image))
    p2 = bed.project(bed.dataset(image))
    records = [entry_record(fileset, entry)] * 200
    for n in range(56):
        _, ofid = bed.attach(("image", image))
        records.append(FileRecord(f"/d/Files/{ofid}", ATTACHMENT, 1, originalfile_id=ofid))
    counting = Counting(conn)
    found = other_holders(counting, records, P(p1))
    assert set(map(tuple, found.values())) == {(P(p2),)}
    assert counting.statements <= 2  # the walk, and once per connection the link tables
    again = Counting(conn)
    other_holders(again, records, P(p1))
    assert again.statements <= 2


def test_collection_keys_are_told_from_the_other_holders():
    keys = ["Dataset:5 (in no Project)", "Project:3", "FileAnnotation:2 on Project:3",
            "Screen:4", "Image:7 (orphaned)", "Plate:8 (in no Screen)"]
    assert collection_keys(keys) == ["Project:3", "Screen:4"]
    assert [is_collection_key(k) for k in ("Project:3", "Screen:12", "Project:3 x",
                                           "Dataset:3")] == [True, True, False, False]
    with pytest.raises(ValueError):
        object_holders(None, "annotation; DROP TABLE x", [1])
    assert membership.IMAGES_OF.keys() == {"project", "screen"}
