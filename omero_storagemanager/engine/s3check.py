"""What purge and audit check of a copy held as an S3 object, asked of the server now.

The rules of purgecheck.py for disks, with requests for system calls:

  found      HEAD answers now, the object has the recorded size and the ETag (and
             version id) the server gave when it stored it (S3Object): an object
             overwritten behind the app's back has another ETag and never counts;
  content    its bytes are read back (GET) and their SHA1 compared with the copy's
             (above `sample_above` bytes, 16 ranges compared with the primary file);
  unchanged  just before each delete, HEAD again: the same ETag, version and size.

A server that cannot be reached (down, credentials refused, bucket gone) counts as no
copy: unlike a disk on a shelf, an online store's old audit is not trusted, so a purge
with the server down deletes nothing and says why.
"""
import os
from dataclasses import dataclass
from typing import Optional

from ..backends.base import LocationOffline
from ..models import S3Object
from . import beneath


@dataclass
class S3CopyAt:
    """One copy of one file as an object, as HEAD found it now (duck-types CopyAt)."""
    copy_file: object  # CopyFile
    backend: object  # backends.s3.S3Backend
    key: str
    identity: Optional[tuple] = None  # (ETag, version id, size) as HEAD found it
    audited: None = None
    damaged: bool = False  # read back with other bytes than recorded (purge records it)

    @property
    def root(self):
        return f"s3://{self.backend.bucket}"

    @property
    def rel(self):
        return self.key

    @property
    def location_id(self):
        return self.copy_file.copy.location_id

    @property
    def path(self):
        return f"{self.root}/{self.key}"

    @property
    def version_id(self):
        return self.identity[1] if self.identity else ""


def _name(entry):
    return f"copy {entry.copy.bag_path} at {entry.copy.location.name}"


def _recorded(entry):
    try:
        return S3Object.objects.get(copy_file_id=entry.pk)
    except S3Object.DoesNotExist:
        return None


def head_problem(entry, backend, key, recorded):
    """(identity, None) of the object now, or (None, why it does not count)."""
    head = backend.head(key, recorded.version_id if recorded else "")
    if head is None:
        return None, f"{_name(entry)} is missing {entry.relpath} (object {key})"
    etag = head.get("ETag", "").strip('"')
    size = head.get("ContentLength")
    if size != entry.size:
        return None, f"{_name(entry)} has {size} bytes for {entry.relpath}, not {entry.size}"
    if recorded is not None and etag != recorded.etag:
        return None, (f"{_name(entry)}: object {key} was overwritten (ETag {etag}, stored "
                      f"{recorded.etag}): not the object the app wrote")
    if recorded is not None and recorded.checksum.startswith("MD5:"):
        # The ETag of a single PUT is the body's MD5: the same fact in another form.
        import base64

        md5 = base64.b64decode(recorded.checksum[4:]).hex()
        if etag != md5:
            return None, f"{_name(entry)}: object {key} has ETag {etag}, its MD5 was {md5}"
    return (etag, head.get("VersionId", "") or "", size), None


def find(entry, backend, offline):
    """purgecheck.Locations.find for an S3 copy: (S3CopyAt, None) or (None, why)."""
    if offline is not None:
        return None, f"{_name(entry)} cannot be read now ({offline}): nothing is deleted"
    key = backend.payload_key(entry.copy.bag_path, entry.relpath)
    try:
        identity, why = head_problem(entry, backend, key, _recorded(entry))
    except LocationOffline as exc:
        return None, f"{_name(entry)} cannot be read now ({exc}): nothing is deleted"
    if identity is None:
        return None, why
    return S3CopyAt(entry, backend, key, identity), None


def check_content(copy_at, primary_root, primary_rel, sample_above):
    """None when the object holds the file's bytes now, else why not."""
    from .purgecheck import SAMPLE_BYTES, _offsets

    entry, backend = copy_at.copy_file, copy_at.backend
    try:
        if sample_above and entry.size > sample_above:
            fd = beneath.open_file(primary_root, primary_rel)
            try:
                for offset in _offsets(entry.size):
                    length = min(SAMPLE_BYTES, entry.size - offset)
                    theirs = backend.read_range(copy_at.key, offset, length,
                                                copy_at.version_id)
                    if theirs != os.pread(fd, length, offset):
                        return f"{_name(entry)} differs from the primary file"
            finally:
                os.close(fd)
        else:
            digest, size, etag = backend.read_sha1(copy_at.key, copy_at.version_id)
            if digest != entry.checksum or size != entry.size:
                copy_at.damaged = True
                return (f"{_name(entry)} is damaged: object {copy_at.key} has SHA1 {digest} "
                        f"({size} bytes), recorded {entry.checksum}")
            if etag != copy_at.identity[0]:
                return f"{_name(entry)} changed while it was read"
    except LocationOffline as exc:
        return f"{_name(entry)} cannot be read now ({exc}): nothing is deleted"
    except OSError as exc:
        return f"{_name(entry)}: {exc.strerror or exc}"
    return None


def unchanged(copy_at):
    """Just before a delete: None while the object is still the one checked."""
    entry = copy_at.copy_file
    try:
        head = copy_at.backend.head(copy_at.key, copy_at.version_id)
    except LocationOffline as exc:
        return f"{_name(entry)} cannot be reached now ({exc}): nothing is deleted"
    if head is None:
        return f"{_name(entry)} is gone: object {copy_at.key} is missing"
    now = (head.get("ETag", "").strip('"'), head.get("VersionId", "") or "",
           head.get("ContentLength"))
    if now != copy_at.identity:
        return f"{_name(entry)} changed since it was checked (object {copy_at.key})"
    return None


def audit_copy(copy, backend, read_back=True):
    """[(CopyFile, why)] of the copy's files that are not right now: HEAD each against
    its recorded ETag and size, and (read_back) its bytes against the SHA1; plus the
    copy's completion object. LocationOffline when the server cannot be asked."""
    bad = []
    if backend.completion(copy.bag_path) is None:
        bad.append((None, "no completion object: the copy is not whole"))
    recorded = {o.copy_file_id: o for o in S3Object.objects.filter(copy_file__copy=copy)}
    for entry in copy.entries.all().iterator():
        entry.copy = copy
        key = backend.payload_key(copy.bag_path, entry.relpath)
        identity, why = head_problem(entry, backend, key, recorded.get(entry.pk))
        if identity is None:
            bad.append((entry, why))
            continue
        if read_back:
            digest, size, _ = backend.read_sha1(key, identity[1])
            if digest != entry.checksum:
                bad.append((entry, f"checksum mismatch: SHA1 {digest}, recorded "
                                   f"{entry.checksum}"))
    return bad
