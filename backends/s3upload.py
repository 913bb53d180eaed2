"""Verified uploads to S3 and reading objects back: the object-storage half of a copy.

One object per file: below `multipart_threshold` bytes a single PUT of the bytes read
once, else a multipart upload of `part_size` parts, `concurrency` of them in flight.
Every request carries the Content-MD5 of its body, which the server checks (a body
changed on the way is refused with BadDigest). The file's SHA1 (and any other hashers
the caller gives, e.g. OMERO's algorithm) is computed on the same read; the source must
not change while it is read. A multipart upload that fails is aborted before the error
goes on: no part is left behind to be paid for (a worker killed outright leaves one,
which the next archive of that copy aborts: S3Backend.abort_uploads).

Read-back (the default) GETs the object and compares its SHA1 with the file's: the copy
counts only when the bytes the server gives back are the bytes read from the disk.
"""
import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Tuple

READ_CHUNK = 1 << 20


class UploadError(Exception):
    """The upload could not be made or trusted; the message says which object and why."""


class SourceChangedDuringUpload(UploadError):
    pass


class ReadBackMismatch(UploadError):
    pass


@dataclass
class Uploaded:
    key: str
    size: int
    sha1: str
    etag: str
    checksum: str  # "MD5:<base64>" for a single PUT; "" for multipart (the ETag covers it)
    version_id: str
    source_id: tuple  # (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) while read
    extra: Tuple[str, ...] = ()  # hex digests of the caller's extra hashers


def _md5_b64(data) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _identity(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_exactly(fd, size):
    """Up to size bytes of fd, read into one buffer (never chunks joined: that held
    twice the part in memory)."""
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if not n:
            break
        got += n
    view.release()
    del buf[got:]
    return buf


def put_bytes(client, bucket, key, data: bytes, storage_class="", extra_args=None) -> dict:
    """One PUT of small data (tag files, markers) with its Content-MD5."""
    args = dict(Bucket=bucket, Key=key, Body=data, ContentMD5=_md5_b64(data))
    if storage_class:
        args["StorageClass"] = storage_class
    args.update(extra_args or {})
    return client.put_object(**args)


class _NoLimit:
    def acquire(self):
        pass

    def release(self):
        pass


def upload_file(client, bucket, key, path, *, threshold, part_size, concurrency,
                storage_class="", extra_hashers=(), extra_args=None,
                pool: Optional[ThreadPoolExecutor] = None, buffers=None) -> Uploaded:
    """Upload the file at path to key; the server checks each request's Content-MD5.
    Raises SourceChangedDuringUpload when the file changed while read, or the
    client's error (ClientError, a connection error) with nothing left behind.
    buffers: a semaphore shared by the uploads of one archive, one permit per body
    (a small file, a part) held in memory: memory stays about permits x part size
    whatever the number of files and parts in flight."""
    buffers = buffers or _NoLimit()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOATIME", 0) | os.O_CLOEXEC)
    try:
        before = os.fstat(fd)
        sha1 = hashlib.sha1()
        args = dict(extra_args or {})
        if storage_class:
            args["StorageClass"] = storage_class
        if before.st_size < threshold:
            buffers.acquire()
            try:
                data = _read_exactly(fd, before.st_size + 1)
                sha1.update(data)
                for h in extra_hashers:
                    h.update(data)
                size = len(data)
                _unchanged(fd, before, size, path)
                md5 = _md5_b64(data)
                answer = client.put_object(Bucket=bucket, Key=key, Body=data,
                                           ContentMD5=md5, **args)
                del data
            finally:
                buffers.release()
            checksum = "MD5:" + md5
        else:
            answer, size = _multipart(client, bucket, key, fd, sha1, extra_hashers,
                                      part_size, concurrency, args, pool, buffers)
            _unchanged(fd, before, size, path)
            checksum = ""
    finally:
        os.close(fd)
    return Uploaded(key, size, sha1.hexdigest(), answer.get("ETag", "").strip('"'), checksum,
                    answer.get("VersionId", "") or "", _identity(before),
                    tuple(h.hexdigest() for h in extra_hashers))


def _unchanged(fd, before, size, path):
    after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) \
            or size != after.st_size:
        raise SourceChangedDuringUpload(f"{path} changed while it was being uploaded")


def _multipart(client, bucket, key, fd, sha1, extra_hashers, part_size, concurrency,
               args, pool, buffers):
    """(CompleteMultipartUpload's answer, bytes) of the file at fd; parts read here in
    order (the SHA1 is sequential), sent `concurrency` at a time."""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **args)["UploadId"]
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max(1, concurrency))
    try:
        futures, parts, size, number = [], [], 0, 0
        while True:
            buffers.acquire()  # released when the part is sent (or failed)
            try:
                data = _read_exactly(fd, part_size)
                if not data and number:
                    buffers.release()
                    break
                number += 1
                sha1.update(data)
                for h in extra_hashers:
                    h.update(data)
                size += len(data)
                future = pool.submit(_part, client, bucket, key, upload_id, number, data)
            except BaseException:
                buffers.release()
                raise
            future.add_done_callback(lambda _: buffers.release())
            futures.append(future)
            last = len(data) < part_size
            del data  # the part's only reference is the pool's, until it is sent
            while len([f for f in futures if not f.done()]) >= concurrency:
                futures[[f.done() for f in futures].index(False)].result()
            if last:
                break
        for future in futures:
            parts.append(future.result())
        answer = client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": sorted(parts, key=lambda p: p["PartNumber"])})
        return answer, size
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # the server is away: the next archive aborts it (abort_uploads)
            pass
        raise
    finally:
        if own_pool:
            pool.shutdown(wait=True)


def _part(client, bucket, key, upload_id, number, data):
    answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                PartNumber=number, Body=data, ContentMD5=_md5_b64(data))
    return {"PartNumber": number, "ETag": answer["ETag"]}


def read_back_sha1(client, bucket, key, version_id="", byte_range=None) -> Tuple[str, int, str]:
    """(SHA1, bytes read, ETag) of the object as the server gives it now."""
    args = dict(Bucket=bucket, Key=key)
    if version_id:
        args["VersionId"] = version_id
    if byte_range:
        args["Range"] = byte_range
    answer = client.get_object(**args)
    body, h, size = answer["Body"], hashlib.sha1(), 0
    try:
        for chunk in body.iter_chunks(READ_CHUNK):
            h.update(chunk)
            size += len(chunk)
    finally:
        body.close()
    return h.hexdigest(), size, answer.get("ETag", "").strip('"')


def verify(client, bucket, uploaded: Uploaded, read_back=True) -> None:
    """The object is the one uploaded: its ETag and size (from the GET of the read-back,
    or a HEAD without it), and its bytes read back against the file's SHA1."""
    if read_back:
        digest, size, etag = read_back_sha1(client, bucket, uploaded.key, uploaded.version_id)
    else:
        args = dict(Bucket=bucket, Key=uploaded.key)
        if uploaded.version_id:
            args["VersionId"] = uploaded.version_id
        head = client.head_object(**args)
        digest, size, etag = uploaded.sha1, head.get("ContentLength"), head.get("ETag", "")
        etag = etag.strip('"')
    if size != uploaded.size or etag != uploaded.etag:
        raise ReadBackMismatch(
            f"object {uploaded.key} is not the one uploaded: {size} bytes, ETag {etag}; "
            f"uploaded {uploaded.size} bytes, ETag {uploaded.etag}")
    if digest != uploaded.sha1:
        raise ReadBackMismatch(f"object {uploaded.key} read back as SHA1 {digest}, not "
                               f"{uploaded.sha1}")
