"""S3 locations: a bucket (and key prefix) of any S3 server, through boto3.

Layout, the disk kinds' below a prefix instead of a mount point:

    <prefix>/<id>/.omero-storagemanager               the marker: the location's UUID
    <prefix>/<id>/<kind>/<group>/<user>/<id>/<datetime>/
        bagit.txt  bag-info.txt  manifest-sha1.txt  tagmanifest-sha1.txt
        data/<payload path>                           one object per file
        .omero-storagemanager-complete                written last

A copy without its completion object is never trusted (not listed, not restored, not
rescanned): objects are written in any order, and only the completion object says the
copy is whole. The marker is read at every check_online(): a bucket or prefix holding
someone else's objects (no marker, another marker) is refused with a clear error, and
nothing is read or written there.

Credentials (S3Settings.credentials): "" the standard AWS chain (environment, shared
credentials file, instance role), "profile:NAME" a profile of the shared files,
"config:NAME" the secret NAME of `omero config` omero.web.storagemanager.s3_credentials
(models.Location.backend() hands the lookup over: backends know nothing of the app's
settings). They are never part of a message or of LocationConfig.

Restores stage a copy into the local folder <mount>/<id>/read/<bag> (a read cache, as
a tape's): every object downloaded is checked against the manifest's SHA1, the folder
is renamed from .partial when whole, and the restore copies from it as from a disk (and
checks every file once more). Objects of a cold storage class (GLACIER, DEEP_ARCHIVE)
are first asked back (RestoreObject): the restore waits until HEAD says they are there.
"""
import dataclasses
import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

from .bagformat import (BAGIT_VERSION, BagContents, BagError, decode_path, encode_path,
                        format_tags, parse_tags)
from .base import (Backend, BadLocation, CorruptCopy, FoundBag, LocationConfig,
                   LocationError, LocationOffline, WrongDisk, check_path_syntax)
from .fsutil import fsync_dir, makedirs_durable, remove_tree
from .layout import PARTIAL_SUFFIX
from . import s3upload

MARKER_NAME = ".omero-storagemanager"
COMPLETE_NAME = ".omero-storagemanager-complete"
MANIFEST = "manifest-sha1.txt"
TAG_FILES = ("bagit.txt", "bag-info.txt", MANIFEST, "tagmanifest-sha1.txt")
COLD_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
STORAGE_CLASSES = ("", "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                   "REDUCED_REDUNDANCY", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
MiB = 1 << 20
# What servers answer when they are out of space or over a quota (Ceph RGW, MinIO, ...).
FULL_CODES = ("QuotaExceeded", "XMinioStorageFull", "StorageFull", "InsufficientStorage",
              "XMinioAdminBucketQuotaExceeded")


class S3Unreachable(LocationOffline):
    """The server cannot be reached, refuses the credentials, or lacks the bucket."""


class RetentionHeld(LocationError):
    """Objects of the copy are under Object Lock retention: they are not deleted."""


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    endpoint_url: str = ""  # "" = AWS
    region: str = ""
    prefix: str = ""
    storage_class: str = ""
    addressing_style: str = "auto"  # auto, path, virtual
    credentials: str = ""  # "", "profile:NAME", "config:NAME" (never the secret itself)
    part_size: int = 16 * MiB
    multipart_threshold: int = 16 * MiB
    concurrency: int = 4
    read_back: bool = True
    # Object Lock retention of every object written ("" none; GOVERNANCE, COMPLIANCE):
    # the bucket must have Object Lock enabled. The app never tries to delete within it.
    object_lock_mode: str = ""
    object_lock_days: int = 0

    @classmethod
    def from_options(cls, options: dict) -> "S3Settings":
        """The settings of a location's options, checked; BadLocation says what is wrong."""
        if not isinstance(options, dict):
            raise BadLocation("S3 settings must be an object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise BadLocation(f"unknown S3 setting(s): {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(sorted(known))})")
        try:
            settings = cls(**options)
        except TypeError:
            raise BadLocation("an S3 location needs a bucket") from None
        settings.check()
        return settings

    def check(self):
        import re

        if not isinstance(self.bucket, str) or not re.fullmatch(
                r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", self.bucket):
            raise BadLocation(f"bucket name {self.bucket!r} is not valid (3-63 characters: "
                              "lower-case letters, digits, '.', '-')")
        if self.endpoint_url and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?",
                                                  str(self.endpoint_url)):
            raise BadLocation(f"endpoint URL {self.endpoint_url!r} must be http(s)://host[:port]")
        prefix = str(self.prefix)
        if prefix.startswith("/") or any(p in ("", ".", "..") for p in prefix.split("/")
                                         if prefix) or "\x00" in prefix:
            raise BadLocation(f"key prefix {prefix!r} must be relative, without '.', '..' "
                              "or empty components")
        if self.storage_class not in STORAGE_CLASSES:
            raise BadLocation(f"storage class {self.storage_class!r} is not one of "
                              + ", ".join(c for c in STORAGE_CLASSES if c))
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise BadLocation("addressing style must be auto, path or virtual")
        cred = str(self.credentials)
        if cred and not re.fullmatch(r"(profile|config):[\w.\-]+", cred):
            raise BadLocation("credentials must be empty (the AWS chain), 'profile:NAME' or "
                              "'config:NAME' (a secret in omero config), never a key")
        for name in ("part_size", "multipart_threshold", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BadLocation(f"{name} must be a positive whole number")
        if self.part_size < 5 * MiB:
            raise BadLocation("part size must be at least 5 MiB (S3's smallest part)")
        if not isinstance(self.read_back, bool):
            raise BadLocation("read_back must be true or false")
        if self.object_lock_mode not in ("", "GOVERNANCE", "COMPLIANCE"):
            raise BadLocation("object_lock_mode must be empty, GOVERNANCE or COMPLIANCE")
        days = self.object_lock_days
        if isinstance(days, bool) or not isinstance(days, int) or days < 0 \
                or bool(days) != bool(self.object_lock_mode):
            raise BadLocation("object_lock_days must be a number of days > 0 with an "
                              "object_lock_mode (and 0 without)")


def describe_settings(options: dict) -> str:
    """s3://bucket/prefix at endpoint: what a page or the CLI shows (no secret)."""
    bucket = options.get("bucket", "?")
    prefix = options.get("prefix", "")
    where = f"s3://{bucket}/{prefix}".rstrip("/")
    endpoint = options.get("endpoint_url")
    return f"{where} at {endpoint}" if endpoint else where


class S3Backend(Backend):
    type = "s3"
    has_read_cache = True  # restores stage copies in <mount>/<id>/read/
    noun = "S3 location"
    offline_state = "cannot be reached"
    connect_verb = "reach"

    # Set by models.Location.backend(): name -> {"access_key_id", "secret_access_key"}.
    secret_lookup: Optional[Callable[[str], dict]] = None

    def __init__(self, config: LocationConfig):
        super().__init__(config)
        self.settings = S3Settings.from_options(config.options)
        self._client = None
        self._lock = threading.Lock()
        # Bodies (small files, parts) held in memory at once, across all uploads.
        self._buffers = threading.BoundedSemaphore(self.settings.concurrency)
        # Copies found cold while staging although the location's class is not (written
        # before its class was changed): their objects are asked back like a cold one's.
        self._found_cold = set()

    def describe(self) -> str:
        return f"{self.noun} {self.config.name!r} (id {self.config.id})"

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    @property
    def base_key(self) -> str:
        prefix = self.settings.prefix.strip("/")
        return f"{prefix}/{self.config.id}" if prefix else str(self.config.id)

    def bag_key(self, relpath: str) -> str:
        return f"{self.base_key}/{self._relpath(relpath)}"

    def payload_key(self, relpath: str, payload: str) -> str:
        return f"{self.bag_key(relpath)}/data/{payload}"

    @property
    def marker_key(self) -> str:
        return f"{self.base_key}/{MARKER_NAME}"

    # -- the client ---------------------------------------------------------------------

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self):
        import boto3
        from botocore.config import Config

        s = self.settings
        kwargs = {}
        session = boto3.session.Session()
        if s.credentials.startswith("profile:"):
            session = boto3.session.Session(profile_name=s.credentials[len("profile:"):])
        elif s.credentials.startswith("config:"):
            name = s.credentials[len("config:"):]
            secret = self.secret_lookup(name) if self.secret_lookup else None
            if not secret:
                raise S3Unreachable(f"{self.describe()}: no secret {name!r} in omero config "
                                    "omero.web.storagemanager.s3_credentials")
            kwargs.update(aws_access_key_id=secret["access_key_id"],
                          aws_secret_access_key=secret["secret_access_key"],
                          aws_session_token=secret.get("session_token"))
        config = Config(s3={"addressing_style": s.addressing_style},
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=10, read_timeout=60,
                        max_pool_connections=4 * s.concurrency + 8,
                        # Content-MD5 is sent by us on every write; no second checksum.
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        return session.client("s3", endpoint_url=s.endpoint_url or None,
                              region_name=s.region or None, config=config, **kwargs)

    def explain(self, exc) -> str:
        """One line on why a request failed, never with a secret."""
        from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError,
                                         NoCredentialsError)

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket",):
                return f"bucket {self.bucket!r} does not exist"
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                        "InvalidToken", "ExpiredToken") or status == 403:
                return f"the server refused the credentials ({code or status})"
            if code in FULL_CODES or status == 507:
                return (f"the server is out of space or the bucket's quota is reached "
                        f"({code or status}): nothing more can be stored until space is "
                        "freed or the quota raised")
            if code == "InternalError" or status == 500:
                return (f"the server could not store or serve it ({code or status}: a "
                        "failure on the server's side, such as a full disk; the server's "
                        "log says which)")
            return f"the server answered {code or status}"
        if isinstance(exc, NoCredentialsError):
            return "no credentials found (AWS chain, profile or omero config secret)"
        if isinstance(exc, EndpointConnectionError):
            return f"cannot connect to {self.settings.endpoint_url or 'AWS S3'}"
        if isinstance(exc, BotoCoreError):
            return f"{type(exc).__name__}: {exc}"
        return str(exc)

    def _unreachable(self, exc) -> S3Unreachable:
        return S3Unreachable(f"{self.describe()} {self.offline_state}: {self.explain(exc)}")

    # -- setting up and checking --------------------------------------------------------

    def initialize(self) -> None:
        """The local staging folder, and the marker object (a prefix holding anything
        else is refused)."""
        check_path_syntax(self.config.mount, "staging folder")
        for path in (self.root, self.read_root):
            makedirs_durable(path)
        found = self.read_marker()
        if found is None:
            foreign = self._foreign_object()
            if foreign:
                raise BadLocation(f"s3://{self.bucket}/{foreign} is not this application's "
                                  "(it writes only <prefix>/<location id>/ with a marker): "
                                  "choose an empty bucket or another prefix")
            try:
                s3upload.put_bytes(self.client, self.bucket, self.marker_key,
                                   (self.marker + "\n").encode())
            except Exception as exc:
                raise self._unreachable(exc) from None
            found = self.read_marker()
        if found != self.marker:
            raise BadLocation(f"s3://{self.bucket}/{self.marker_key} holds {found}, not "
                              f"{self.marker}: another location's prefix")

    def _foreign_object(self) -> Optional[str]:
        """A key under the prefix that no location of this app wrote (the app writes
        only <prefix>/<id>/...), or under <prefix>/<id>/ before its marker; else None."""
        prefix = self.settings.prefix.strip("/")
        prefix = prefix + "/" if prefix else ""
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix,
                                               Delimiter="/", MaxKeys=1000)
            mine = self.client.list_objects_v2(Bucket=self.bucket,
                                               Prefix=self.base_key + "/", MaxKeys=1)
        except Exception as exc:
            raise self._unreachable(exc) from None
        for obj in page.get("Contents", []):
            return obj["Key"]
        for common in page.get("CommonPrefixes", []):
            if not common["Prefix"][len(prefix):-1].isdigit():
                return common["Prefix"]
        for obj in mine.get("Contents", []):
            return obj["Key"]
        return None

    def read_marker(self) -> Optional[str]:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.marker_key)
            return answer["Body"].read(4096).decode("ascii", "replace").strip()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._unreachable(exc) from None
        except Exception as exc:
            raise self._unreachable(exc) from None

    def marker_problem(self, adopt=True) -> Optional[str]:
        found = self.read_marker()
        if found is None:
            return (f"s3://{self.bucket}/{self.base_key}/ has no marker object "
                    f"{MARKER_NAME}: not this location's prefix (another application's "
                    "objects, or the wrong bucket or prefix)")
        if found != self.marker:
            return (f"s3://{self.bucket}/{self.marker_key} holds {found}, not "
                    f"{self.marker}: another location's prefix")
        return None

    def check_online(self) -> None:
        problem = self.marker_problem()  # raises S3Unreachable when it cannot ask
        if problem:
            raise WrongDisk(f"{self.describe()}: {problem}; nothing was read or written")

    def is_online(self) -> bool:
        try:
            return self.marker_problem(adopt=False) is None
        except LocationOffline:
            return False

    def offline_reason(self) -> str:
        try:
            return self.marker_problem(adopt=False) or "it is online"
        except LocationOffline as exc:
            return str(exc)

    def disk_usage(self) -> int:
        self.check_online()
        total = 0
        for page in self._pages(self.base_key + "/"):
            total += sum(o["Size"] for o in page.get("Contents", []))
        return total

    def _pages(self, prefix):
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix)
        except Exception as exc:
            if isinstance(exc, LocationOffline):
                raise
            raise self._unreachable(exc) from None

    # -- writing a copy -----------------------------------------------------------------

    def bag_dir(self, relpath: str) -> Path:
        raise BadLocation(f"{self.describe()} holds objects, not folders: use bag_key")

    def abort_uploads(self, relpath: str) -> int:
        """Abort the multipart uploads a killed archive left under the bag: never left
        behind. Returns how many."""
        prefix = self.bag_key(relpath) + "/"
        aborted = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for upload in page.get("Uploads", []):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted += 1
        except Exception as exc:
            raise self._unreachable(exc) from None
        return aborted

    def retention_args(self) -> dict:
        """The Object Lock arguments of a write (none without a lock mode)."""
        s = self.settings
        if not s.object_lock_mode:
            return {}
        from datetime import datetime, timedelta, timezone

        return {"ObjectLockMode": s.object_lock_mode,
                "ObjectLockRetainUntilDate": datetime.now(timezone.utc)
                + timedelta(days=s.object_lock_days)}

    @property
    def cold(self) -> bool:
        """Objects are written in a cold storage class: unreadable until asked back."""
        return self.settings.storage_class in COLD_CLASSES

    def upload(self, relpath, payload, path, extra_hashers=(), pool=None):
        """Upload one payload file, verified (s3upload.py); returns s3upload.Uploaded.
        In a cold class the object cannot be read back: it is sent with an SHA-1
        checksum the server checks and keeps, and verified by HEAD in checksum mode."""
        s = self.settings
        uploaded = s3upload.upload_file(
            self.client, self.bucket, self.payload_key(relpath, payload), path,
            threshold=s.multipart_threshold, part_size=s.part_size,
            concurrency=s.concurrency, storage_class=s.storage_class,
            extra_hashers=extra_hashers, pool=pool, extra_args=self.retention_args(),
            buffers=self._buffers, server_sha1=self.cold)
        s3upload.verify(self.client, self.bucket, uploaded,
                        read_back=s.read_back and not self.cold)
        return uploaded

    def finish_bag(self, relpath, records, info: Dict[str, str]) -> dict:
        """Write the tag files, then the completion object last. records: iterable of
        (payload path, sha1, size) in any order. Returns the completion's content."""
        lines, total, count = [], 0, 0
        for payload, sha1, size in sorted(records):
            lines.append(f"{sha1}  data/{encode_path(payload)}\n")
            total, count = total + size, count + 1
        manifest = "".join(lines).encode()
        items = list(info.items()) + [("Payload-Oxum", f"{total}.{count}")]
        tags = {
            "bagit.txt": format_tags([("BagIt-Version", BAGIT_VERSION),
                                      ("Tag-File-Character-Encoding", "UTF-8")]).encode(),
            "bag-info.txt": format_tags(items).encode(),
            MANIFEST: manifest,
        }
        import hashlib

        tags["tagmanifest-sha1.txt"] = "".join(
            f"{hashlib.sha1(data).hexdigest()}  {name}\n"
            for name, data in sorted(tags.items())).encode()
        bag = self.bag_key(relpath)
        try:
            for name, data in tags.items():
                s3upload.put_bytes(self.client, self.bucket, f"{bag}/{name}", data,
                                   extra_args=self.retention_args())
                got = self.client.get_object(Bucket=self.bucket, Key=f"{bag}/{name}")
                if got["Body"].read() != data:
                    raise CorruptCopy(f"{bag}/{name} read back differs from what was written")
            complete = {"files": count, "bytes": total, "marker": self.marker,
                        "manifest_sha1": hashlib.sha1(manifest).hexdigest()}
            s3upload.put_bytes(self.client, self.bucket, f"{bag}/{COMPLETE_NAME}",
                               json.dumps(complete, sort_keys=True).encode(),
                               extra_args=self.retention_args())
        except (CorruptCopy, LocationOffline):
            raise
        except Exception as exc:
            raise self._unreachable(exc) from None
        return complete

    def completion(self, relpath) -> Optional[dict]:
        """The completion object of a copy, None when there is none (never trusted)."""
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket,
                                         Key=f"{self.bag_key(relpath)}/{COMPLETE_NAME}")
            return json.loads(got["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._unreachable(exc) from None
        except ValueError:
            return None
        except Exception as exc:
            raise self._unreachable(exc) from None

    def publish(self, relpath, order) -> None:
        self.order_folders(relpath, order)
        self.check_online()
        if self.completion(relpath) is None:
            raise CorruptCopy(f"no complete copy at s3://{self.bucket}/{self.bag_key(relpath)}/")

    # -- reading ------------------------------------------------------------------------

    def head(self, key, version_id=""):
        """HEAD of an object (with its stored checksum), None when it is missing."""
        from botocore.exceptions import ClientError

        args = dict(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if version_id:
            args["VersionId"] = version_id
        try:
            return self.client.head_object(**args)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._unreachable(exc) from None
        except Exception as exc:
            raise self._unreachable(exc) from None

    def read_sha1(self, key, version_id="", byte_range=None):
        """(SHA1, bytes, ETag) of the object now; S3Unreachable when it cannot be read."""
        try:
            return s3upload.read_back_sha1(self.client, self.bucket, key, version_id,
                                           byte_range)
        except Exception as exc:
            raise self._unreachable(exc) from None

    def read_range(self, key, start, length, version_id=""):
        args = dict(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
        if version_id:
            args["VersionId"] = version_id
        try:
            return self.client.get_object(**args)["Body"].read()
        except Exception as exc:
            raise self._unreachable(exc) from None

    def read_contents(self, relpath) -> BagContents:
        """The bag's bag-info and manifest, read from its tag objects."""
        bag = self.bag_key(relpath)
        try:
            info = parse_tags(self.client.get_object(
                Bucket=self.bucket, Key=f"{bag}/bag-info.txt")["Body"].read().decode(),
                "bag-info.txt")
            text = self.client.get_object(Bucket=self.bucket,
                                          Key=f"{bag}/{MANIFEST}")["Body"].read().decode()
        except Exception as exc:
            raise BagError(f"s3://{self.bucket}/{bag}: {self.explain(exc)}") from None
        manifest = {}
        for line in text.splitlines():
            if line.strip():
                digest, path = line.split(None, 1)
                if not path.startswith("data/"):
                    raise BagError(f"{bag}/{MANIFEST}: {path!r} is not below data/")
                manifest[decode_path(path[len("data/"):])] = digest.lower()
        return BagContents(Path(bag), info, manifest)

    def find_bags(self) -> Iterator[FoundBag]:
        """Every copy with a completion object under the prefix (rescan)."""
        self.check_online()
        suffix = "/" + COMPLETE_NAME
        for page in self._pages(self.base_key + "/"):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if not key.endswith(suffix):
                    continue
                relpath = key[len(self.base_key) + 1:-len(suffix)]
                try:
                    yield FoundBag("write", relpath, self.read_contents(relpath))
                except BagError as exc:
                    yield FoundBag("write", relpath, BagContents(Path(relpath), algorithm=""),
                                   str(exc))

    # -- restoring: staged into the local read cache --------------------------------------

    def _cold_waiting(self, relpath, contents, ask=True) -> Optional[str]:
        """For a cold storage class: the reason to wait while some objects are not
        available (readable) now, else None; ask: send RestoreObject for those not yet
        asked back (request_restore asks, restore_source only looks)."""
        if self.settings.storage_class not in COLD_CLASSES and relpath not in self._found_cold:
            return None
        waiting, classes = 0, set()
        for payload in contents.manifest:
            key = self.payload_key(relpath, payload)
            head = self.head(key)
            if head is None:
                continue
            restore = head.get("Restore", "")
            found = head.get("StorageClass", self.settings.storage_class)
            if found not in COLD_CLASSES or 'ongoing-request="false"' in restore:
                continue
            waiting += 1
            classes.add(found)
            if ask and not restore:
                try:
                    self.client.restore_object(Bucket=self.bucket, Key=key, RestoreRequest={
                        "Days": 7, "GlacierJobParameters": {"Tier": "Standard"}})
                except Exception as exc:
                    raise self._unreachable(exc) from None
        if waiting:
            return (f"{self.describe()}: {waiting} object(s) of copy {relpath} are being "
                    f"restored from {' and '.join(sorted(classes))}; the restore waits")
        return None

    def restore_source(self, relpath: str) -> Optional[Path]:
        """The copy staged whole in <mount>/<id>/read/<relpath>, downloaded now if it is
        not there yet; None when it cannot be reached now (request_restore says why)."""
        rel = self._relpath(relpath)
        staged = self.read_root / rel
        if self._usable(staged):
            return staged
        try:
            self.check_online()
            if self.completion(relpath) is None:
                return None
            contents = self.read_contents(relpath)
            if self._cold_waiting(relpath, contents, ask=False):
                return None
            self._stage(relpath, contents, staged)
        except (LocationOffline, BagError, CorruptCopy, OSError):
            return None
        except Exception as exc:  # the server refused a GET: no copy now, never a crash
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "InvalidObjectState":
                self._found_cold.add(relpath)
            return None
        return self._usable(staged)

    def request_restore(self, relpath: str, order) -> str:
        self._relpath(relpath)
        try:
            self.check_online()
        except LocationOffline as exc:
            return str(exc)
        if self.completion(relpath) is None:
            return (f"{self.describe()} holds no complete copy at s3://{self.bucket}/"
                    f"{self.bag_key(relpath)}/ (no completion object): restore from another "
                    "location")
        try:
            waiting = self._cold_waiting(relpath, self.read_contents(relpath))
        except BagError as exc:
            return str(exc)
        if waiting:
            return waiting
        if self.restore_source(relpath):
            return f"the copy is staged at {self.read_root / relpath}"
        return (f"{self.describe()}: copy {relpath} could not be staged in "
                f"{self.read_root}: run the restore again")

    def _stage(self, relpath, contents, staged: Path):
        work = staged.with_name(staged.name + PARTIAL_SUFFIX)
        if os.path.lexists(work):
            remove_tree(work)
        makedirs_durable(work / "data")
        bag = self.bag_key(relpath)
        for name in TAG_FILES:
            got = self.client.get_object(Bucket=self.bucket, Key=f"{bag}/{name}")
            (work / name).write_bytes(got["Body"].read())

        def fetch(item):
            payload, sha1 = item
            target = work / "data" / payload
            target.parent.mkdir(parents=True, exist_ok=True)
            import hashlib

            h = hashlib.sha1()
            answer = self.client.get_object(Bucket=self.bucket,
                                            Key=self.payload_key(relpath, payload))
            # Not fsynced: the restore reads every staged file back against its SHA1
            # before it writes it into the repository, so a torn staged file is caught
            # there; an fsync per small file would set the pace of the whole restore.
            with open(target, "wb") as out:
                for chunk in answer["Body"].iter_chunks(s3upload.READ_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != sha1:
                raise CorruptCopy(f"s3://{self.bucket}/{self.payload_key(relpath, payload)} "
                                  f"has SHA1 {h.hexdigest()}, its manifest says {sha1}")

        with ThreadPoolExecutor(self.settings.concurrency) as pool:
            list(pool.map(fetch, contents.manifest.items()))
        staged.parent.mkdir(parents=True, exist_ok=True)
        os.rename(work, staged)
        fsync_dir(staged.parent)

    # -- deleting what the app wrote -------------------------------------------------------

    def delete_copy(self, relpath: str) -> int:
        """Delete a copy: its completion object first (never a half-deleted copy that
        looks whole), then the objects its manifest and tag files name, nothing else
        under the prefix. Returns how many objects were deleted."""
        self.check_online()
        bag = self.bag_key(relpath)
        contents = self.read_contents(relpath)
        keys = [f"{bag}/{COMPLETE_NAME}"]
        keys += [self.payload_key(relpath, p) for p in sorted(contents.manifest)]
        keys += [f"{bag}/{name}" for name in TAG_FILES]
        locked = self.retained_until(keys)
        if locked:
            raise RetentionHeld(f"{self.describe()}: copy {relpath} is under Object Lock "
                                f"retention until {locked:%Y-%m-%d %H:%M} UTC: nothing was "
                                "deleted (the app never tries to delete within retention)")
        try:
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})
        except Exception as exc:
            raise self._unreachable(exc) from None
        staged = self.read_root / self._relpath(relpath)
        if os.path.lexists(staged):
            shutil.rmtree(staged)
        return len(keys)

    def retained_until(self, keys):
        """The latest Object Lock retain-until date still in the future among the
        objects, else None (asked of the server: a retention set by anyone counts)."""
        from datetime import datetime, timezone

        now, latest = datetime.now(timezone.utc), None
        for key in keys:
            head = self.head(key)
            until = head.get("ObjectLockRetainUntilDate") if head else None
            if until is not None and until > now and (latest is None or until > latest):
                latest = until
        return latest
