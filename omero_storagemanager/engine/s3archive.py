"""Archive to an S3 location: the bag's files uploaded as objects, each verified.

archive.py plans as for any location and hands over here for type s3. Each file is
read once (its SHA1, and OMERO's algorithm when that is another, computed on the way:
a primary that does not match OMERO's checksum is refused, PrimaryDamaged), uploaded
with a Content-MD5 per request that the server checks, then HEAD and read back and
compared with the file's SHA1 (backends/s3upload.py). Only then is its CopyFile row
written, with an S3Object row (ETag, checksum, version id) and the primary's identity
(PrimaryFile): a killed archive resumes from the rows, and aborts the multipart uploads
it left. When every file is in, the tag files are written, then the completion object
last; the Copy is VERIFIED only after that (backend.publish reads it back).
"""
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import timedelta

from django.db import transaction

from ..backends.base import LocationError
from ..backends.s3upload import SourceChangedDuringUpload, UploadError
from ..models import Copy, CopyFile, PrimaryFile, S3Object
from .archiveplan import ArchiveError
from .copyfile import MANIFEST_ALGORITHM, PrimaryDamaged, SourceChanged
from .hashing import new_hasher

BATCH = 256  # rows written at once


def _open_copy(collection, location, backend, now):
    """The copy being written here (a killed run's: its stray multipart uploads are
    aborted), else a new one under a bag name no copy uses."""
    copy = (Copy.objects.filter(collection=collection, location=location, state=Copy.WRITING)
            .order_by("-created").first())
    if copy is not None:
        backend.abort_uploads(copy.bag_path)
        return copy, True
    parent = (Copy.objects.filter(collection=collection, location=location,
                                  state=Copy.VERIFIED).order_by("-created").first())
    from ..backends.base import bag_relpath

    while True:
        relpath = bag_relpath(collection.kind, collection.group_id, collection.owner_id,
                              collection.omero_id, now)
        taken = Copy.objects.filter(location=location, bag_path=relpath).exists()
        if not taken and backend.completion(relpath) is None:
            break
        now += timedelta(seconds=1)
    copy = Copy.objects.create(collection=collection, location=location, parent=parent,
                               bag_path=relpath, state=Copy.WRITING, created=now)
    return copy, False


def _upload_one(backend, relpath, item, part_pool):
    record, payload = item
    extra = []
    if record.hash and record.hasher and record.hasher != MANIFEST_ALGORITHM:
        extra.append(new_hasher(record.hasher))
    try:
        uploaded = backend.upload(relpath, payload, record.path, extra, part_pool)
    except SourceChangedDuringUpload as exc:
        raise SourceChanged(str(exc)) from None
    got = uploaded.extra[0] if extra else uploaded.sha1
    if record.hash and got.lower() != record.hash.lower():
        # Uploaded already, but never recorded: the copy does not hold it. The object is
        # overwritten by the next archive of this file or deleted with the copy.
        raise PrimaryDamaged(f"{record.path} does not match its recorded checksum "
                             f"({record.hasher or MANIFEST_ALGORITHM} {record.hash}, read {got})")
    return uploaded


def _record(copy, done):
    """CopyFile, S3Object and PrimaryFile rows of verified uploads, in one transaction."""
    from .archive import record_primaries

    with transaction.atomic():
        rows = CopyFile.objects.bulk_create([
            CopyFile(copy=copy, relpath=payload, size=up.size, checksum=up.sha1,
                     algorithm=MANIFEST_ALGORITHM, mode=0o644, verified=True,
                     source_mtime=up.source_id[3] / 1e9, source_mtime_ns=up.source_id[3])
            for (record, payload), up in done])
        S3Object.objects.bulk_create([
            S3Object(copy_file=row, etag=up.etag, checksum=up.checksum,
                     version_id=up.version_id) for row, (_, up) in zip(rows, done)])
        record_primaries([
            PrimaryFile(relpath=payload, device=up.source_id[0], inode=up.source_id[1],
                        size=up.source_id[2], mtime_ns=up.source_id[3],
                        ctime_ns=up.source_id[4], sha1=up.sha1)
            for (record, payload), up in done])


def _upload_all(backend, copy, todo, progress):
    """Upload the plan's files, `concurrency` files at once; rows written as uploads
    are verified. Raises the first failure once the uploads in flight are settled."""
    settings = backend.settings
    progress.start(len(todo))
    done, failure = [], None
    files = max(1, settings.concurrency)
    with ThreadPoolExecutor(files) as pool, ThreadPoolExecutor(files) as part_pool:
        pending = {}
        source = iter(todo)
        exhausted = False
        while True:
            while not exhausted and failure is None and len(pending) < 2 * files:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                pending[pool.submit(_upload_one, backend, copy.bag_path, item,
                                    part_pool)] = item
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                item = pending.pop(future)
                try:
                    uploaded = future.result()
                except Exception as exc:  # the first failure stops new uploads
                    failure = failure or exc
                    continue
                done.append((item, uploaded))
                progress.advance(1, 1, uploaded.size)
            if len(done) >= BATCH:
                _record(copy, done)
                done = []
    if done:
        _record(copy, done)
    progress.done()
    if failure is not None:
        raise failure


def archive_to_s3(collection, location, backend, todo, pending, info_of, progress, log,
                  now):
    """Upload the plan's files to a copy at the S3 location, finish and publish it.
    info_of(copy) -> bag-info. Returns the Copy, VERIFIED."""
    from .archive import _refusal, publish_verified

    copy, resumed = _open_copy(collection, location, backend, now)
    where = f"s3://{backend.bucket}/{backend.bag_key(copy.bag_path)}/"
    if backend.completion(copy.bag_path) is None:
        recorded = CopyFile.objects.filter(copy=copy).count()
        todo.leave_out(copy, recorded)
        log(f"{collection.key}: uploading {len(todo)} file(s) to {where}"
            + (f" ({recorded} already verified)" if recorded else ""))
        try:
            _upload_all(backend, copy, todo, progress)
        except Exception as exc:
            message = _failure(backend, exc)
            if not resumed and _refusal(exc) and not CopyFile.objects.filter(copy=copy).exists():
                Copy.objects.filter(pk=copy.pk, state=Copy.WRITING).delete()
            raise ArchiveError(f"{collection.key}: {message}") from exc
        rows = CopyFile.objects.filter(copy=copy).values_list("relpath", "checksum", "size")
        try:
            backend.finish_bag(copy.bag_path, rows.iterator(), info_of(copy))
        except LocationError as exc:
            raise ArchiveError(f"{collection.key}: {exc}; the primary files are untouched; "
                               "run the archive again to finish the copy") from exc
    publish_verified(backend, collection, copy, log)
    return copy


def _failure(backend, exc):
    """One line on why the upload stopped; the primary files are always untouched."""
    if isinstance(exc, (PrimaryDamaged, SourceChanged, UploadError, LocationError)):
        why = str(exc)
    elif isinstance(exc, OSError):
        why = f"reading {exc.filename or 'a primary file'} failed: {exc.strerror or exc}"
    else:
        why = f"{backend.describe()}: {backend.explain(exc)}"
    return (f"{why}; the primary files are untouched; the files verified so far are "
            "kept and running the archive again resumes")
