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

Objects of a cold storage class (GLACIER, DEEP_ARCHIVE) cannot be read until they are
asked back, so they cannot be read back: they are uploaded with an SHA-1 checksum the
server checks and keeps (x-amz-checksum-sha1: the file's own SHA-1 for a single PUT;
for a multipart upload the SHA-1 of the parts' SHA-1s, "-N", computed here from the
parts sent), and verified by a HEAD in checksum mode that must give that checksum back.
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
    # "MD5:<base64>" for a single PUT; "" for multipart (the ETag covers it); with
    # server-side SHA-1 checksums (cold classes) "SHA1:<base64>", or "SHA1:<base64>-N"
    # for a multipart upload of N parts
    checksum: str
    version_id: str
    source_id: tuple  # (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) while read
    extra: Tuple[str, ...] = ()  # hex digests of the caller's extra hashers


def _md5_b64(data) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def sha1_checksum(sha1_hex: str) -> str:
    """The recorded checksum of a single PUT with an SHA-1 whose hex digest is given."""
    return "SHA1:" + _b64(bytes.fromhex(sha1_hex))


def server_checksum_matches(recorded: str, head: dict) -> bool:
    """True when a HEAD in checksum mode gives back the SHA-1 checksum recorded at
    upload ("SHA1:<base64>[-N]"). Servers give a multipart object's composite checksum
    with or without its "-N"; any other answer (none, another algorithm) is no match."""
    if not recorded.startswith("SHA1:"):
        return False
    value = recorded[len("SHA1:"):]
    theirs = head.get("ChecksumSHA1") or ""
    return bool(theirs) and theirs in (value, value.rsplit("-", 1)[0] if "-" in value else value)


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
                pool: Optional[ThreadPoolExecutor] = None, buffers=None,
                server_sha1=False) -> Uploaded:
    """Upload the file at path to key; the server checks each request's Content-MD5.
    Raises SourceChangedDuringUpload when the file changed while read, or the
    client's error (ClientError, a connection error) with nothing left behind.
    buffers: a semaphore shared by the uploads of one archive, one permit per body
    (a small file, a part) held in memory: memory stays about permits x part size
    whatever the number of files and parts in flight.
    server_sha1: also send an SHA-1 checksum with each request, which the server checks
    and keeps (verify_by_checksum reads it back; for objects that cannot be read)."""
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
                sums = {}
                if server_sha1:
                    sums = dict(ChecksumAlgorithm="SHA1", ChecksumSHA1=_b64(sha1.digest()))
                answer = client.put_object(Bucket=bucket, Key=key, Body=data,
                                           ContentMD5=md5, **args, **sums)
                del data
            finally:
                buffers.release()
            checksum = sha1_checksum(sha1.hexdigest()) if server_sha1 else "MD5:" + md5
        else:
            answer, size, composite = _multipart(
                client, bucket, key, fd, sha1, extra_hashers, part_size, concurrency, args,
                pool, buffers, server_sha1)
            _unchanged(fd, before, size, path)
            checksum = composite
    finally:
        os.close(fd)
    # "null" is the version of an object in a bucket without versioning (some servers
    # say it, others say nothing): the same as none, and not asked for by id.
    version = answer.get("VersionId", "") or ""
    version = "" if version == "null" else version
    return Uploaded(key, size, sha1.hexdigest(), answer.get("ETag", "").strip('"'), checksum,
                    version, _identity(before),
                    tuple(h.hexdigest() for h in extra_hashers))


def _unchanged(fd, before, size, path):
    after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) \
            or size != after.st_size:
        raise SourceChangedDuringUpload(f"{path} changed while it was being uploaded")


def _multipart(client, bucket, key, fd, sha1, extra_hashers, part_size, concurrency,
               args, pool, buffers, server_sha1=False):
    """(CompleteMultipartUpload's answer, bytes, recorded checksum) of the file at fd;
    parts read here in order (the SHA1 is sequential), sent `concurrency` at a time.
    The recorded checksum is "" or, with server_sha1, the composite "SHA1:<b64>-N"."""
    if server_sha1:
        args = dict(args, ChecksumAlgorithm="SHA1")
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **args)["UploadId"]
    part_digests = []
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
                digest = hashlib.sha1(data).digest() if server_sha1 else None
                if digest is not None:
                    part_digests.append(digest)
                future = pool.submit(_part, client, bucket, key, upload_id, number, data,
                                     digest)
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
        composite = ""
        if server_sha1:
            composite = (f"SHA1:{_b64(hashlib.sha1(b''.join(part_digests)).digest())}"
                         f"-{len(part_digests)}")
        return answer, size, composite
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # the server is away: the next archive aborts it (abort_uploads)
            pass
        raise
    finally:
        if own_pool:
            pool.shutdown(wait=True)


def _part(client, bucket, key, upload_id, number, data, sha1_digest=None):
    sums = {}
    if sha1_digest is not None:
        sums = dict(ChecksumAlgorithm="SHA1", ChecksumSHA1=_b64(sha1_digest))
    answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                PartNumber=number, Body=data, ContentMD5=_md5_b64(data),
                                **sums)
    part = {"PartNumber": number, "ETag": answer["ETag"]}
    if sums:
        part["ChecksumSHA1"] = sums["ChecksumSHA1"]
    return part


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
    or a HEAD without it), and its bytes read back against the file's SHA1; an object
    uploaded with a server-side SHA-1 checksum and not read back: that checksum, as a
    HEAD in checksum mode gives it now."""
    if not read_back and uploaded.checksum.startswith("SHA1:"):
        return verify_by_checksum(client, bucket, uploaded)
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


def verify_by_checksum(client, bucket, uploaded: Uploaded) -> None:
    """For an object that cannot be read (a cold storage class): HEAD in checksum mode
    gives its size, its ETag and the SHA-1 checksum the server checked and kept, which
    must be the one sent (the file's SHA-1, or the composite of its parts' SHA-1s)."""
    args = dict(Bucket=bucket, Key=uploaded.key, ChecksumMode="ENABLED")
    if uploaded.version_id:
        args["VersionId"] = uploaded.version_id
    head = client.head_object(**args)
    size, etag = head.get("ContentLength"), head.get("ETag", "").strip('"')
    if size != uploaded.size or etag != uploaded.etag:
        raise ReadBackMismatch(
            f"object {uploaded.key} is not the one uploaded: {size} bytes, ETag {etag}; "
            f"uploaded {uploaded.size} bytes, ETag {uploaded.etag}")
    if not server_checksum_matches(uploaded.checksum, head):
        raise ReadBackMismatch(
            f"object {uploaded.key}: the server gives checksum "
            f"{head.get('ChecksumSHA1') or 'none'}, not the {uploaded.checksum} sent "
            "(a cold storage class needs a server that keeps SHA-1 checksums)")
