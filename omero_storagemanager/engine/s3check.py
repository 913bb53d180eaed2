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

An object of a cold storage class (GLACIER, DEEP_ARCHIVE) not restored now cannot be
read: its content check is the SHA-1 checksum the server checked when it stored the
object and gives back to a HEAD in checksum mode, which must be the one recorded at
upload (S3Object.checksum "SHA1:..."; for a single PUT that is the copy's SHA-1 itself).
No recorded SHA-1 checksum, or the server giving none or another, and the object does
not count: nothing is deleted on its strength.
"""
import base64
import os
from dataclasses import dataclass
from typing import Optional

from ..backends.base import LocationOffline
from ..backends.s3 import COLD_CLASSES
from ..backends.s3upload import server_checksum_matches
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
    recorded: Optional[object] = None  # its S3Object row
    cold: bool = False  # in a cold storage class, not restored: checked by its checksum

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


def unreadable(head) -> bool:
    """The object is in a cold storage class and not restored now: GET would fail."""
    return (head.get("StorageClass") in COLD_CLASSES
            and 'ongoing-request="false"' not in (head.get("Restore") or ""))


def checksum_problem(entry, key, recorded, head):
    """For an object that cannot be read: None when the server's SHA-1 checksum of it
    is the one recorded when exactly the copy's bytes were uploaded, else why not."""
    what = f"{_name(entry)}: object {key} is in {head.get('StorageClass')} (not readable now)"
    checksum = recorded.checksum if recorded is not None else ""
    if not checksum.startswith("SHA1:"):
        return f"{what} and no SHA-1 checksum was recorded when it was written: it does not count"
    body = checksum[len("SHA1:"):]
    if "-" not in body and base64.b64decode(body).hex() != entry.checksum:
        return f"{what}: its recorded checksum {checksum} is not the file's SHA-1 {entry.checksum}"
    if not server_checksum_matches(checksum, head):
        return (f"{what}: the server gives checksum {head.get('ChecksumSHA1') or 'none'}, "
                f"recorded {checksum}")
    return None


def head_now(entry, backend, key, recorded):
    """(HEAD's answer, identity, None) of the object now, or (HEAD, None, why it does
    not count)."""
    head = backend.head(key, recorded.version_id if recorded else "")
    if head is None:
        return None, None, f"{_name(entry)} is missing {entry.relpath} (object {key})"
    etag = head.get("ETag", "").strip('"')
    size = head.get("ContentLength")
    if size != entry.size:
        return head, None, (f"{_name(entry)} has {size} bytes for {entry.relpath}, not "
                            f"{entry.size}")
    if recorded is not None and etag != recorded.etag:
        return head, None, (f"{_name(entry)}: object {key} was overwritten (ETag {etag}, "
                            f"stored {recorded.etag}): not the object the app wrote")
    if recorded is not None and recorded.checksum.startswith("MD5:"):
        # The ETag of a single PUT is the body's MD5: the same fact in another form.
        md5 = base64.b64decode(recorded.checksum[4:]).hex()
        if etag != md5:
            return head, None, f"{_name(entry)}: object {key} has ETag {etag}, its MD5 was {md5}"
    return head, (etag, head.get("VersionId", "") or "", size), None


def find(entry, backend, offline):
    """purgecheck.Locations.find for an S3 copy: (S3CopyAt, None) or (None, why)."""
    if offline is not None:
        return None, f"{_name(entry)} cannot be read now ({offline}): nothing is deleted"
    key = backend.payload_key(entry.copy.bag_path, entry.relpath)
    recorded = _recorded(entry)
    try:
        head, identity, why = head_now(entry, backend, key, recorded)
    except LocationOffline as exc:
        return None, f"{_name(entry)} cannot be read now ({exc}): nothing is deleted"
    if identity is None:
        return None, why
    return S3CopyAt(entry, backend, key, identity, recorded=recorded,
                    cold=unreadable(head)), None


def _check_cold(copy_at):
    """The content check of an object that cannot be read: asked again now, the same
    object (ETag, version, size) with the recorded SHA-1 checksum."""
    entry = copy_at.copy_file
    head = copy_at.backend.head(copy_at.key, copy_at.version_id)
    why = _not_the_object_checked(copy_at, head)
    if why:
        return why
    why = checksum_problem(entry, copy_at.key, copy_at.recorded, head)
    if why and "server gives" in why:
        copy_at.damaged = True
    return why


def check_content(copy_at, primary_root, primary_rel, sample_above):
    """None when the object holds the file's bytes now, else why not."""
    from .purgecheck import SAMPLE_BYTES, _offsets

    entry, backend = copy_at.copy_file, copy_at.backend
    try:
        if copy_at.cold:
            return _check_cold(copy_at)
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
    return _not_the_object_checked(copy_at, head)


def _not_the_object_checked(copy_at, head):
    """Why the object a HEAD answered about (None: it is gone) is not the one checked
    (ETag, version, size), or None while it is."""
    entry = copy_at.copy_file
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
        head, identity, why = head_now(entry, backend, key, recorded.get(entry.pk))
        if identity is None:
            bad.append((entry, why))
            continue
        if unreadable(head):  # a cold class: the server's checksum, not the bytes
            why = checksum_problem(entry, key, recorded.get(entry.pk), head)
            if why:
                bad.append((entry, why))
            continue
        if read_back:
            digest, size, _ = backend.read_sha1(key, identity[1])
            if digest != entry.checksum:
                bad.append((entry, f"checksum mismatch: SHA1 {digest}, recorded "
                                   f"{entry.checksum}"))
    return bad
