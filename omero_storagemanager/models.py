"""The app's own state, in the Django database configured by omero.web.databases.

OMERO itself is never written through these models: they record what the app knows
about OMERO's collections (Project and Screen) and what it has done to them: scans,
verified copies at archive locations, jobs, requests, quotas.
"""
from django.db import models


# (column, descending) of the list's sort (and stored state) indexes: one per column, read
# backwards for the other direction, and a second one for a column that may be NULL
# (missing values sort last both ways, which one index read backwards cannot give).
# Not scanned_at: every scan sets it on every row, and an index on it would stop those
# updates being made in place (HOT, migration 0007): 100,000 rows took 13.7 s, not 2.3 s.
LIST_INDEXES = [(c, False) for c in ("name", "kind", "omero_id", "owner_name", "group_name",
                                     "files", "images", "bytes", "newest_file", "last_access",
                                     "created", "state")] + [
    (c, True) for c in ("newest_file", "last_access", "created")]


class Collection(models.Model):
    """A Project or Screen of OMERO, with the figures of its latest scan."""

    PROJECT, SCREEN = "project", "screen"
    KINDS = [(PROJECT, "Project"), (SCREEN, "Screen")]

    ONLINE = "online"
    ARCHIVED = "archived"  # a verified copy exists, primary files still in place
    PARTIALLY_PURGED = "partially_purged"
    PURGED = "purged"
    RESTORING = "restoring"
    STATES = [
        (ONLINE, "online"),
        (ARCHIVED, "archived"),
        (PARTIALLY_PURGED, "partially purged"),
        (PURGED, "purged"),
        (RESTORING, "restoring"),
    ]

    kind = models.CharField(max_length=7, choices=KINDS)
    omero_id = models.BigIntegerField()
    name = models.TextField(default="")
    owner_id = models.BigIntegerField()
    owner_name = models.CharField(max_length=255, default="")
    group_id = models.BigIntegerField()
    group_name = models.CharField(max_length=255, default="")
    created = models.DateTimeField(null=True)
    # Deleted in OMERO: kept because its copies and history must stay findable.
    gone = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=STATES, default=ONLINE)

    # Figures of the latest scan (see ScanResult for the history).
    files = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    images = models.BigIntegerField(default=0)
    shared_bytes = models.BigIntegerField(default=0)
    thumbnail_bytes = models.BigIntegerField(default=0)
    missing_files = models.BigIntegerField(default=0)
    newest_file = models.DateTimeField(null=True)
    last_access = models.DateTimeField(null=True)
    scanned_at = models.DateTimeField(null=True)
    scan_mode = models.CharField(max_length=8, default="")

    # What purge changed in OMERO (rename, owner, group), so restore can undo it.
    original_name = models.TextField(null=True)
    original_owner_id = models.BigIntegerField(null=True)
    original_group_id = models.BigIntegerField(null=True)

    # What the automatic archive saw the last time its plan found nothing to copy here
    # (tasks/policy.py): while it is unchanged, a night does not plan this one again.
    auto_archive_memo = models.CharField(max_length=40, default="", blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "omero_id"], name="sm_collection_unique"),
        ]
        indexes = [models.Index(fields=["owner_id"]), models.Index(fields=["group_id"])] + [
            # The collections list's sort orders (views/listing.py), visible rows only: a
            # page is read from the index instead of sorting every row (migration 0015).
            models.Index(models.F(column).desc(nulls_last=True) if desc else column,
                         models.F("id").desc() if desc else "id", condition=models.Q(gone=False),
                         name=f"sm_list_{column[:12]}{'_desc' if desc else ''}")
            for column, desc in LIST_INDEXES] + [
            # Who may see a row (permissions.visible_filter): a member's count reads it alone.
            models.Index(fields=["group_id", "owner_id"], condition=models.Q(gone=False),
                         name="sm_list_visible")]

    @property
    def key(self):
        """The OMERO way of naming it: Project:12, Screen:3."""
        return f"{self.get_kind_display()}:{self.omero_id}"

    def __str__(self):
        return f"{self.key} {self.name}"


class ScanResult(models.Model):
    """One scan of one collection: mode, time, figures and errors."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="scans")
    mode = models.CharField(max_length=8)  # catalog, stat or verify
    started = models.DateTimeField()
    finished = models.DateTimeField(null=True)
    figures = models.JSONField(default=dict)
    errors = models.JSONField(default=list)

    class Meta:
        indexes = [models.Index(fields=["collection", "-started"])]

    # What a stat or verify scan found on the disk that says the files changed (not
    # when it ran, nor the last access: reading a file changes neither its bytes nor
    # what an archive copies).
    DISK_CONTENT = ("files", "bytes", "newest_file", "missing_files")

    @classmethod
    def disk_content(cls, collection):
        """DISK_CONTENT of the collection's last stat or verify scan, None when never."""
        figures = (cls.objects.filter(collection=collection, mode__in=("stat", "verify"),
                                      finished__isnull=False)
                   .order_by("-finished").values_list("figures", flat=True).first())
        return None if figures is None else [figures.get(k) for k in cls.DISK_CONTENT]

    @classmethod
    def last_read_from_disk(cls, collection):
        """When the collection's files were last read from the disk (last access, sizes):
        the end of its last stat or verify scan (a catalog scan reads only OMERO's
        database). None when never."""
        return (cls.objects.filter(collection=collection, mode__in=("stat", "verify"),
                                   finished__isnull=False)
                .order_by("-finished").values_list("finished", flat=True).first())


class Location(models.Model):
    """An archive location: identified on disk by <mount>/<id>/ with read/ and write/."""

    HDD, TAPE, AUTOMATED, SYMLINK = "hdd", "tape", "automated", "symlink"
    S3 = "s3"
    TYPES = [
        (HDD, "HDD (removable or fixed)"),
        (TAPE, "Tape (with read cache)"),
        (AUTOMATED, "Automated (XML orders)"),
        (SYMLINK, "Online (symlinks into the archive)"),
        (S3, "S3 object storage (bucket)"),
    ]

    name = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=10, choices=TYPES)
    mount = models.CharField(max_length=4096)
    max_bytes = models.BigIntegerField()
    purge_watermark = models.PositiveSmallIntegerField(default=80)  # percent of max_bytes
    purge_enabled = models.BooleanField(default=False)
    current = models.BooleanField(default=False)  # the target of new archives
    xml_folder = models.CharField(max_length=4096, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    # Written into <mount>/<id>/ as well (backends: the location marker): a disk whose
    # marker differs is another disk mounted at the same place, never trusted.
    marker = models.CharField(max_length=64, blank=True, default="")
    # Type s3 only (backends/s3.py S3Settings): endpoint, region, bucket, prefix, ...;
    # never a secret (credentials come from the AWS chain or omero config).
    options = models.JSONField(default=dict, blank=True)
    # Tape and automated: what write/ and read/ held when last measured, and the copies
    # on the archive medium only (engine/capacity.py).
    write_bytes = models.BigIntegerField(default=0)
    read_bytes = models.BigIntegerField(default=0)
    medium_only_bytes = models.BigIntegerField(default=0)
    medium_only_copies = models.IntegerField(default=0)
    measured_at = models.DateTimeField(null=True)

    def __str__(self):
        return f"{self.name} ({self.type}, id {self.pk})"

    def backend(self):
        """The storage backend of this location (omero_storagemanager.backends)."""
        from .backends import backend_for
        from .backends.base import LocationConfig

        def on_marker(marker):  # a location made before markers got one: record it
            from .engine.locations import record_marker

            record_marker(self, marker)

        backend = backend_for(LocationConfig(
            id=self.pk, name=self.name, type=self.type, mount=self.mount,
            max_bytes=self.max_bytes, purge_watermark=self.purge_watermark,
            purge_enabled=self.purge_enabled, xml_folder=self.xml_folder,
            marker=self.marker, on_marker=on_marker, options=self.options or {}))
        if self.type == self.S3:  # its secret, if in omero config, looked up by name
            from . import settings

            backend.secret_lookup = settings.S3_CREDENTIALS.get
        return backend


class Copy(models.Model):
    """One BagIt bag at one location for one collection at one point in time."""

    WRITING, VERIFIED, FAILED_AUDIT, EVICTED = "writing", "verified", "failed_audit", "evicted"
    MISSING = "missing"  # a rescan did not find its bag on the location (issue 20)
    STATES = [
        (WRITING, "writing"),
        (VERIFIED, "verified"),
        (FAILED_AUDIT, "failed audit"),
        (EVICTED, "evicted from read cache"),
        (MISSING, "missing from the location"),
    ]

    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="copies")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="copies")
    # Incremental copies hold only new files and chain to the copy before them.
    parent = models.ForeignKey("self", null=True, on_delete=models.PROTECT)
    bag_path = models.CharField(max_length=4096)  # relative to <mount>/<id>/write/
    state = models.CharField(max_length=12, choices=STATES, default=WRITING)
    created = models.DateTimeField()
    verified_at = models.DateTimeField(null=True)
    files = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    last_audit = models.DateTimeField(null=True)
    last_audit_ok = models.BooleanField(null=True)


class CopyFile(models.Model):
    """A file inside a copy: the link between a primary file and its verified copy."""

    copy = models.ForeignKey(Copy, on_delete=models.CASCADE, related_name="entries")
    # Relative to the OMERO root it came from: "ManagedRepository/..." or "Pixels/...".
    relpath = models.TextField()
    size = models.BigIntegerField()
    checksum = models.CharField(max_length=128)
    algorithm = models.CharField(max_length=16, default="SHA1-160")
    mode = models.PositiveIntegerField(default=0o644)
    verified = models.BooleanField(default=False)
    # The source's mtime when copied: tells a changed file without a checksum in OMERO.
    source_mtime = models.FloatField(null=True)
    # The same, exact (st_mtime_ns): what a restore gives back with os.utime(ns=...).
    source_mtime_ns = models.BigIntegerField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["copy", "relpath"], name="sm_copyfile_unique"),
        ]
        indexes = [models.Index(fields=["relpath"])]


class PrimaryFile(models.Model):
    """A primary file whose bytes the app knows: when it copied the file (archive) or
    wrote it (restore), the file had this identity (device, inode, size, mtime in ns)
    and these bytes (sha1). Purge deletes a primary file only while lstat still gives
    this identity, with one link, and a copy of this sha1 is there now: a file
    rewritten, replaced or hard-linked since is kept (engine/purge.py)."""

    relpath = models.TextField(unique=True)  # relative to its OMERO root, as in copies
    device = models.BigIntegerField()
    inode = models.BigIntegerField()
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    # Changes with any write or metadata change and cannot be set back by a tool (an
    # rsync --inplace -t keeps size and mtime): a mismatch makes purge read the file.
    ctime_ns = models.BigIntegerField()
    sha1 = models.CharField(max_length=40)
    recorded = models.DateTimeField(auto_now=True)

    def identity(self):
        """As copyfile.identity_of: (device, inode, size, mtime_ns, ctime_ns)."""
        return (self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns)


class RepositoryRoot(models.Model):
    """An OMERO root (data directory, managed repository) the app archived from, as it
    was then: its device and the marker file the app left in it. A restore refuses a
    root whose device or marker differs (an unmounted share: the bare mount point)."""

    path = models.TextField(unique=True)
    device = models.BigIntegerField()
    marker = models.CharField(max_length=64)
    recorded = models.DateTimeField(auto_now=True)


class PurgedFile(models.Model):
    """A primary file that purge removed (or replaced by a link), and the copy it relied on.

    Written with state INTENT before the file is touched, so a purge or restore killed at
    any instant can tell what it had done.
    """

    INTENT, PURGED, RESTORED = "intent", "purged", "restored"
    STATES = [(INTENT, INTENT), (PURGED, PURGED), (RESTORED, RESTORED)]

    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="purged")
    path = models.TextField()  # absolute path of the primary file
    relpath = models.TextField()  # relative to its OMERO root, as in the copies
    size = models.BigIntegerField()
    sha1 = models.CharField(max_length=40)
    mode = models.PositiveIntegerField()
    copy_file = models.ForeignKey(CopyFile, on_delete=models.PROTECT, related_name="purges")
    linked = models.BooleanField(default=False)  # symlink mode: replaced by a link
    state = models.CharField(max_length=8, choices=STATES, default=INTENT)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["collection", "state"]), models.Index(fields=["path"])]


class Job(models.Model):
    """A unit of work run by a django-q2 worker; this row, not the queue, is the truth."""

    KINDS = [
        (k, k.replace("_", " "))
        for k in (
            "sync", "scan", "archive", "purge", "restore", "cache_purge", "location_rescan",
            "audit", "backup", "quota_check", "auto_archive",
        )
    ]
    QUEUED, RUNNING, WAITING, DONE, FAILED, CANCELLED = (
        "queued", "running", "waiting", "done", "failed", "cancelled")
    STATES = [(s, s) for s in (QUEUED, RUNNING, WAITING, DONE, FAILED, CANCELLED)]

    kind = models.CharField(max_length=16, choices=KINDS)
    state = models.CharField(max_length=10, choices=STATES, default=QUEUED)
    collections = models.ManyToManyField(Collection, blank=True, related_name="jobs")
    location = models.ForeignKey(Location, null=True, blank=True, on_delete=models.SET_NULL)
    params = models.JSONField(default=dict)
    requested_by_id = models.BigIntegerField(null=True)  # OMERO experimenter id
    requested_by_name = models.CharField(max_length=255, default="")
    wait_reason = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    files_done = models.BigIntegerField(default=0)
    files_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True)
    finished = models.DateTimeField(null=True)
    log_dir = models.CharField(max_length=4096, blank=True, default="")
    # Liveness and control, for the runner and the monitor (tasks/):
    worker = models.CharField(max_length=255, blank=True, default="")  # host:pid running it
    heartbeat = models.DateTimeField(null=True)  # refreshed while running
    next_check = models.DateTimeField(null=True)  # when a waiting job is looked at again
    cancel_requested = models.BooleanField(default=False)
    summary = models.JSONField(default=dict)  # what the job did, for pages and e-mails
    # A wait (tasks/waiting.py): what for (medium, cache, busy), the reason without
    # server paths for non-admins, since when (kept over rechecks), last e-mail about it.
    wait_kind = models.CharField(max_length=16, blank=True, default="")
    wait_public = models.TextField(blank=True, default="")
    wait_since = models.DateTimeField(null=True)
    wait_reminded = models.DateTimeField(null=True)

    class Meta:
        indexes = [models.Index(fields=["state", "kind"])]

    ACTIVE = (QUEUED, RUNNING, WAITING)

    def __str__(self):
        return f"job {self.pk} {self.kind} ({self.state})"


class Request(models.Model):
    """A user's request to archive or restore a collection, awaiting an admin or group
    owner (tasks/approvals.py). Approving it submits the job on the requester's behalf."""

    ARCHIVE, RESTORE = "archive", "restore"
    PENDING, APPROVED, DECLINED = "pending", "approved", "declined"
    WITHDRAWN = "withdrawn"  # by the requester, while pending

    kind = models.CharField(max_length=8, choices=[(ARCHIVE, ARCHIVE), (RESTORE, RESTORE)])
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="requests")
    state = models.CharField(
        max_length=9, default=PENDING,
        choices=[(PENDING, PENDING), (APPROVED, APPROVED), (DECLINED, DECLINED),
                 (WITHDRAWN, WITHDRAWN)])
    requested_by_id = models.BigIntegerField()
    requested_by_name = models.CharField(max_length=255, blank=True, default="")
    comment = models.TextField(blank=True, default="")
    decided_by_id = models.BigIntegerField(null=True)
    decided_by_name = models.CharField(max_length=255, blank=True, default="")
    decision_comment = models.TextField(blank=True, default="")
    # The job an approval submitted, so the requester can follow it.
    job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="requests")
    created = models.DateTimeField(auto_now_add=True)
    decided = models.DateTimeField(null=True)

    class Meta:
        indexes = [models.Index(fields=["state", "collection"])]


class Quota(models.Model):
    """A storage quota: the default for all users or groups (omero_id NULL) or an exception."""

    USER, GROUP = "user", "group"
    scope = models.CharField(max_length=5, choices=[(USER, USER), (GROUP, GROUP)])
    omero_id = models.BigIntegerField(null=True)
    max_bytes = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "omero_id"], name="sm_quota_unique"),
        ]


class Preference(models.Model):
    """A preference changed from the admin page (preferences.py): overrides its default."""

    key = models.CharField(max_length=64, unique=True)
    value = models.JSONField()
    changed_by = models.CharField(max_length=255, blank=True, default="")
    changed = models.DateTimeField(auto_now=True)


class S3Object(models.Model):
    """A copied file as an object at an S3 location (backends/s3.py): what the server
    said when it stored it. Purge and audit compare HEAD against it (an object
    overwritten behind the app's back has another ETag or checksum)."""

    copy_file = models.OneToOneField(CopyFile, on_delete=models.CASCADE,
                                     related_name="s3_object")
    etag = models.CharField(max_length=128)
    checksum = models.CharField(max_length=128, blank=True, default="")  # "MD5:<base64>"
    version_id = models.CharField(max_length=1024, blank=True, default="")


class UsageRecord(models.Model):
    """Usage on one day, recorded once a day (engine/usage.py): the primary storage
    (its file system's used and total bytes), each group's and user's online bytes, each
    location's copies. A few dozen rows a day; the history the capacity charts and the
    projection of when the primary storage fills are drawn from."""

    PRIMARY, GROUP, USER, LOCATION = "primary", "group", "user", "location"
    SCOPES = [(s, s) for s in (PRIMARY, GROUP, USER, LOCATION)]

    day = models.DateField()
    scope = models.CharField(max_length=8, choices=SCOPES)
    subject = models.BigIntegerField(default=0)  # group, user or location id; 0 for primary
    name = models.CharField(max_length=255, blank=True, default="")
    bytes = models.BigIntegerField(default=0)
    files = models.BigIntegerField(default=0)
    limit_bytes = models.BigIntegerField(null=True)  # file system size, quota, max size

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "scope", "subject"],
                                               name="sm_usage_record_unique")]
        indexes = [models.Index(fields=["scope", "day"], name="sm_usage_scope_day")]


class CatalogCursor(models.Model):
    """Where the incremental catalogue stopped reading OMERO's eventlog (engine/incremental.py).

    One row. Advanced in the same transaction as the figures it led to, so a worker
    killed in between leaves the changes to be read again, never skipped.
    """

    last_eventlog_id = models.BigIntegerField(null=True)  # None: no catalogue yet
    pending = models.JSONField(default=list)  # transaction ids open at the last read
    deletions = models.JSONField(default=dict)  # table -> rows deleted, at the last read
    mode = models.CharField(max_length=12, blank=True, default="")  # full or incremental
    reason = models.TextField(blank=True, default="")  # why the last refresh was full
    updated = models.DateTimeField(null=True)


class FilesetFigures(models.Model):
    """Each OMERO Fileset's figures, kept between catalogue refreshes (engine/filesetcache.py).

    Written whole by every catalog scan of everything; an incremental refresh re-reads
    only the filesets a change can alter, so its cost follows the changed filesets, not
    the collections reached. Rows hold a fileset's own files (entries and import logs),
    as catalog.totals.FILESET_FIGURES sums them.
    """

    fileset_id = models.BigIntegerField(primary_key=True)  # OMERO's Fileset id
    files = models.BigIntegerField()
    bytes = models.BigIntegerField(null=True)
    newest = models.DateTimeField(null=True)  # newest file's mtime
    unhashed = models.BigIntegerField()  # files with no hash


class CollectionCount(models.Model):
    """How many Collections (not gone) each owner has in each group, by kind: kept by
    triggers on the Collection table (migration 0016), so that the collections list's
    total for a user is a sum over a few hundred rows instead of a count of 100,000
    (views/listing.py; issue 24)."""

    group_id = models.BigIntegerField()
    owner_id = models.BigIntegerField()
    kind = models.CharField(max_length=7)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group_id", "owner_id", "kind"],
                                               name="sm_collection_count_unique")]
