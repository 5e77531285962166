"""S3-compatible BlobStore (SeaweedFS, MinIO, Ceph RGW, OCI Object Storage's S3 API, AWS) via boto3.

URL: ``s3://bucket[/prefix]?endpoint=http://host:port[&region=...&connect_timeout=...&read_timeout=...
&max_attempts=...&max_connections=...]``. The endpoint is required; addressing is path-style, which
every S3-compatible server understands. Credentials come from boto3's default chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/...), never from the URL.

Atomicity: an object appears only when its single PUT or CompleteMultipartUpload succeeds, and a
replacement is swapped in whole, so readers never see a partial object.

Threads: one botocore client (thread-safe) is shared by every thread using the store; its connection
pool has ``max_connections`` slots, which is also what ``properties.max_connections`` advertises.

Object Lock: on a bucket created with Object Lock enabled (hence versioned), `retain_until` gives an
object a COMPLIANCE retention date (only ever extended), and `delete` removes every version of the
name, so deleting really frees space and a version under retention refuses (PermanentStoreError).
On other buckets `retain_until` answers False and `delete` is a plain DELETE.

Errors: a missing object is ObjectNotFound. A missing bucket, rejected credentials, access denied and
other 4xx answers are PermanentStoreError with a message naming the bucket and endpoint. Network failures
and 5xx answers (after botocore's own retries) are plain BlobStoreError.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
import botocore.exceptions as bce
import botocore.loaders
import botocore.session
from botocore.config import Config

from bootvault.blobstore.base import (
    BlobStoreError,
    ObjectNotFound,
    PermanentStoreError,
    StoreProperties,
    check_name,
    check_prefix,
    check_range,
)

MiB = 1 << 20
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB  # objects at least this large go up in parts
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's lower bound for every part but the last
MAX_PARTS = 10_000
BODY_READ_ATTEMPTS = 3  # botocore retries requests, not a body that breaks off while being read

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
_OBJECT_OPS = {"GET", "HEAD", "DELETE"}  # operations where a 404 means "no such object"
_BODY_ERRORS = (bce.IncompleteReadError, bce.ResponseStreamingError, bce.ReadTimeoutError)


class S3BlobStore:
    """Objects are keys ``<prefix>/<name>`` in one bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        max_connections: int = 16,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 8,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name: {bucket!r}")
        if part_size < MIN_PART_SIZE or multipart_threshold < 1 or max_connections < 1:
            raise ValueError("part_size must be >= 5 MiB; multipart_threshold and max_connections >= 1")
        prefix = prefix.strip("/")
        if prefix:
            check_name(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self._key_prefix = f"{prefix}/" if prefix else ""
        self.endpoint = endpoint
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.properties = StoreProperties(max_connections=max_connections)
        self._bucket_ok = False  # set once a probe has seen the bucket and accepted the credentials
        self._object_lock: bool | None = None  # learned on first use
        session = boto3.session.Session(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            botocore_session=_botocore_session(),
        )
        config = Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        region = region or session.region_name or "us-east-1"
        self._client = session.client("s3", endpoint_url=endpoint, region_name=region, config=config)

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={self.endpoint!r})"

    def _key(self, name: str) -> str:
        check_name(name)
        return self._key_prefix + name

    # -- operations -------------------------------------------------------------------------------

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        key = self._key(name)
        if not isinstance(data, bytes | bytearray):
            data = memoryview(data).cast("B").tobytes()  # botocore takes bytes, bytearray or a file
        if len(data) < self.multipart_threshold:
            self._call("PUT", name, self._client.put_object, Key=key, Body=data)
        else:
            self._put_multipart(name, key, memoryview(data))

    def _put_multipart(self, name: str, key: str, view: memoryview) -> None:
        part_size = max(self.part_size, -(-view.nbytes // MAX_PARTS))
        upload = self._call("PUT", name, self._client.create_multipart_upload, Key=key)
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, view.nbytes, part_size), start=1):
                body = view[start : start + part_size].tobytes()
                resp = self._call(
                    "PUT",
                    name,
                    self._client.upload_part,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            self._call(
                "PUT",
                name,
                self._client.complete_multipart_upload,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            # Best effort: a leftover upload is invisible to readers and only costs space.
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def get(self, name: str) -> bytes:
        return self._read(name, self._key(name))

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length); shorter or b"" past the end; ObjectNotFound if absent."""
        check_range(offset, length)
        key = self._key(name)
        if length == 0:
            self.size(name)  # still report a missing object
            return b""
        return self._read(name, key, offset, length)

    def size(self, name: str) -> int:
        head = self._head(name)
        if head is None:
            raise ObjectNotFound(name)
        return int(head["ContentLength"])

    def exists(self, name: str) -> bool:
        return self._head(name) is not None

    def delete(self, name: str) -> None:
        key = self._key(name)
        if self.object_lock():  # versioned: a plain DELETE would only hide the object
            versions = self._call("LIST", name, self._client.list_object_versions, Prefix=key)
            for v in [*versions.get("Versions", ()), *versions.get("DeleteMarkers", ())]:
                if v["Key"] == key:
                    self._call("DELETE", name, self._client.delete_object, Key=key, VersionId=v["VersionId"])
            return
        with contextlib.suppress(ObjectNotFound):  # S3 answers 204 anyway; some servers say 404
            self._call("DELETE", name, self._client.delete_object, Key=key)

    def object_lock(self) -> bool:
        """Whether the bucket has Object Lock enabled (asked once)."""
        if self._object_lock is None:
            try:
                conf = self._client.get_object_lock_configuration(Bucket=self.bucket)
                enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except bce.ClientError as exc:
                if _status(exc) >= 500 or exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                    raise self._error(exc, "GET", None) from exc
                enabled = False  # ObjectLockConfigurationNotFoundError, or a server without the API
            except bce.BotoCoreError as exc:
                raise self._error(exc, "GET", None) from exc
            self._object_lock = enabled
        return self._object_lock

    def retain_until(self, name: str, until: datetime) -> bool:
        """Keep the object (its current version) from deletion until `until`, COMPLIANCE mode:
        nobody, whatever their credentials, shortens or removes it. Never shortens a date already
        set. False when the bucket has no Object Lock."""
        if not self.object_lock():
            return False
        key = self._key(name)
        try:
            current = self._client.get_object_retention(Bucket=self.bucket, Key=key)["Retention"]
            if current.get("RetainUntilDate") and current["RetainUntilDate"] >= until:
                return True
        except bce.ClientError as exc:
            if _status(exc) not in (400, 404):  # 404/400: no retention yet (or no object: PUT says)
                raise self._error(exc, "GET", name) from exc
        retention = {"Mode": "COMPLIANCE", "RetainUntilDate": until}
        self._call("PUT", name, self._client.put_object_retention, Key=key, Retention=retention)
        return True

    def list(self, prefix: str) -> Iterator[str]:
        check_prefix(prefix)
        cut = len(self._key_prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key_prefix + prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield obj["Key"][cut:]
        except (bce.ClientError, bce.BotoCoreError) as exc:
            raise self._error(exc, "LIST", f"{prefix}*") from exc

    # -- plumbing ---------------------------------------------------------------------------------

    def _call(self, op: str, name: str | None, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(Bucket=self.bucket, **kwargs)
        except (bce.ClientError, bce.BotoCoreError) as exc:
            raise self._error(exc, op, name) from exc

    def _read(self, name: str, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """GET the object, or bytes [offset, offset + length) of it (b"" if offset is past the end)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length is not None:
            kwargs["Range"] = f"bytes={offset}-{offset + length - 1}"
        attempt = 1
        while True:
            try:
                resp = self._client.get_object(**kwargs)
            except bce.ClientError as exc:
                if _status(exc) == 416:  # range not satisfiable: the object exists but is shorter
                    return b""
                raise self._error(exc, "GET", name) from exc
            except bce.BotoCoreError as exc:
                raise self._error(exc, "GET", name) from exc
            try:
                data: bytes = resp["Body"].read()
            except _BODY_ERRORS as exc:
                resp["Body"].close()
                if attempt == BODY_READ_ATTEMPTS:
                    raise BlobStoreError(f"S3 GET {name!r} from {self._where()} broke off: {exc}") from exc
                attempt += 1
                continue
            if length is not None and "ContentRange" not in resp:  # the server ignored Range
                data = data[offset : offset + length]
            return data

    def _head(self, name: str) -> dict[str, Any] | None:
        """HEAD the object; None if it does not exist. HEAD answers carry no error code, so a 404 or
        403 is explained by probing the bucket with a request that does (missing bucket, bad keys)."""
        key = self._key(name)
        try:
            head: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=key)
            return head
        except bce.ClientError as exc:
            status = _status(exc)
            if status == 403 or (status == 404 and not self._bucket_ok):
                self._probe_bucket()
            if status == 404:
                return None
            raise self._error(exc, "HEAD", name) from exc
        except bce.BotoCoreError as exc:
            raise self._error(exc, "HEAD", name) from exc

    def _probe_bucket(self) -> None:
        self._call("LIST", None, self._client.list_objects_v2, Prefix=self._key_prefix, MaxKeys=1)
        self._bucket_ok = True

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"

    def _error(self, exc: Exception, op: str, name: str | None) -> BlobStoreError:
        """Translate a botocore exception into a BlobStoreError that says what is wrong."""
        what = f"S3 {op} {name!r}" if name else f"S3 {op}"
        if isinstance(exc, bce.ClientError):
            err = exc.response.get("Error", {})
            code, status = str(err.get("Code", "")), _status(exc)
            if code == "NoSuchBucket":
                return PermanentStoreError(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}")
            if name is not None and op in _OBJECT_OPS and (code in _NOT_FOUND_CODES or status == 404):
                return ObjectNotFound(name)
            if code in _CREDENTIAL_CODES:
                return PermanentStoreError(
                    f"S3 credentials were rejected by {self.endpoint} ({code}) for bucket {self.bucket!r}: "
                    "check the access key and secret key"
                )
            if code == "AccessDenied" or status == 403:
                return PermanentStoreError(
                    f"{what}: access denied to {self._where()}: the credentials lack permission for it"
                )
            message = f"{what} failed at {self._where()}: HTTP {status} {code} {err.get('Message', '')}"
            if 400 <= status < 500 and status not in (408, 429):
                return PermanentStoreError(message)
            return BlobStoreError(message)
        if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
            return PermanentStoreError(
                f"no usable S3 credentials for {self._where()}: set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY or configure an AWS profile ({exc})"
            )
        if isinstance(exc, bce.ConnectionError | bce.HTTPClientError):
            where = f"S3 endpoint {self.endpoint} (bucket {self.bucket!r})"
            return BlobStoreError(f"cannot reach {where} for {what}: {exc}")
        return BlobStoreError(f"{what} failed at {self._where()}: {exc}")


def _botocore_session() -> botocore.session.Session:
    """A fresh session (sessions are not thread-safe) sharing one loader of the service model files:
    that makes a store ~20 ms to open instead of ~150 ms."""
    global _LOADER
    if _LOADER is None:
        _LOADER = botocore.loaders.create_loader()
    session = botocore.session.Session()
    session.register_component("data_loader", _LOADER)
    return session


_LOADER: botocore.loaders.Loader | None = None


def _status(exc: bce.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "region": str,
    "connect_timeout": float,
    "read_timeout": float,
    "max_attempts": int,
    "max_connections": int,
}


def open_s3_url(url: str) -> S3BlobStore:
    """Open ``s3://bucket[/prefix]?endpoint=http(s)://host:port[&region=...]`` (see the module doc)."""
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, unquote(parts.path).strip("/")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    endpoint = options.pop("endpoint", "")
    if not bucket:
        raise ValueError(
            f"unsupported store URL {url!r}: no bucket (expected s3://bucket/prefix?endpoint=...)"
        )
    if urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc:
        raise ValueError(
            f"unsupported store URL {url!r}: needs endpoint=http(s)://host[:port] of the S3 service, "
            "e.g. s3://bucket/prefix?endpoint=http://127.0.0.1:8333"
        )
    unknown = set(options) - set(_URL_OPTIONS)
    if unknown:
        raise ValueError(f"unsupported store URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}")
    try:
        kwargs = {k: _URL_OPTIONS[k](v) for k, v in options.items()}
    except ValueError as exc:
        raise ValueError(f"unsupported store URL {url!r}: {exc}") from None
    return S3BlobStore(bucket, prefix, endpoint=endpoint, **kwargs)
