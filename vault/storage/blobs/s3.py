"""``s3://bucket/prefix``: one object per blob, in any S3-compatible object store.

The endpoint, region and credentials come from boto3's usual sources (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, profiles, instance roles),
so the vault holds no S3 secret of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from vault.errors import NotFound, ServiceUnavailable, VaultError
from vault.storage.blobs.base import READ_CHUNK, check_key, is_key

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from vault.db import Session

# S3 refuses parts under 5 MiB (but the last); 8 MiB is what boto3's own transfers use.
MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_WRITE = "The blob store cannot be written to"
_LIST = "The blob store cannot be listed"
_READ = "The blob store cannot be read"


class S3BlobStore:
    transactional = False

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        list_page_size: int = 1000,
    ) -> None:
        if not bucket:
            raise VaultError("The S3 blob store needs a bucket: s3://bucket[/prefix]")
        if part_size < MIN_PART_SIZE:
            raise VaultError(f"S3 parts must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.part_size = part_size
        self.list_page_size = list_page_size
        # A session of our own: boto3's default session is not safe to share across threads.
        # Each download in progress holds a connection while it streams; the pool must not
        # be smaller than the server's worker threads (40 by default).
        self._client = client or boto3.session.Session().client(
            "s3", config=Config(max_pool_connections=64)
        )

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, session: Session, key: str, chunks: Iterable[bytes]) -> None:
        name = self._name(key)
        # At most one part is buffered: a blob smaller than a part goes up in one request,
        # anything larger as a multipart upload, part by part as the ciphertext is produced.
        buffer = bytearray()
        stream = iter(chunks)
        for chunk in stream:
            buffer += chunk
            if len(buffer) >= self.part_size:
                self._put_multipart(name, buffer, stream)
                return
        with _outage(_WRITE):
            self._client.put_object(Bucket=self.bucket, Key=name, Body=bytes(buffer))

    def _put_multipart(self, name: str, buffer: bytearray, rest: Iterator[bytes]) -> None:
        # Checksums follow boto3's own transfers: per-part CRC32 unless the operator set
        # AWS_REQUEST_CHECKSUM_CALCULATION=when_required for a store that lacks them.
        config = self._client.meta.config
        checksums = getattr(config, "request_checksum_calculation", None) == "when_supported"
        with _outage(_WRITE):
            if checksums:
                started = self._client.create_multipart_upload(
                    Bucket=self.bucket, Key=name, ChecksumAlgorithm="CRC32"
                )
            else:
                started = self._client.create_multipart_upload(Bucket=self.bucket, Key=name)
        upload_id = started["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        try:
            with _outage(_WRITE):
                for part in _parts(buffer, rest, self.part_size):
                    number = len(parts) + 1
                    uploaded = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=name,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=part,
                    )
                    done: CompletedPartTypeDef = {"PartNumber": number, "ETag": uploaded["ETag"]}
                    if checksums and "ChecksumCRC32" in uploaded:
                        done["ChecksumCRC32"] = uploaded["ChecksumCRC32"]
                    parts.append(done)
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            # Best effort: if the abort fails too, drop_interrupted() finds the upload later.
            with suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id
                )
            raise

    def read(self, key: str, session: Session | None = None) -> Iterator[bytes]:
        name = self._name(key)
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=name)["Body"]
        except ClientError as error:
            if _code(error) in _MISSING:
                raise NotFound("Blob not found") from None
            raise ServiceUnavailable(_READ) from None
        except BotoCoreError:
            raise ServiceUnavailable(_READ) from None
        return _chunks(body)

    def delete(self, session: Session, key: str) -> None:
        name = self._name(key)
        with _outage(_WRITE):
            self._client.delete_object(Bucket=self.bucket, Key=name)

    def list_older_than(self, cutoff: datetime) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self.prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        with _outage(_LIST):
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].removeprefix(self.prefix)
                    # Other objects may share the bucket: only our own keys are candidates.
                    if is_key(key) and item["LastModified"] < cutoff:
                        yield key

    def drop_interrupted(self, cutoff: datetime) -> int:
        dropped = 0
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket,
            Prefix=self.prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        with _outage(_LIST):
            for page in pages:
                for upload in page.get("Uploads", []):
                    name = upload["Key"]
                    if is_key(name.removeprefix(self.prefix)) and upload["Initiated"] < cutoff:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=name, UploadId=upload["UploadId"]
                        )
                        dropped += 1
        return dropped

    def check(self) -> None:
        with _outage("The blob store cannot be reached"):
            self._client.head_bucket(Bucket=self.bucket)


def _parts(buffer: bytearray, rest: Iterator[bytes], part_size: int) -> Iterator[bytes]:
    """Cut the stream into parts of exactly ``part_size`` bytes, the last one shorter."""
    while True:
        while len(buffer) >= part_size:
            with memoryview(buffer) as view:  # one copy, not two
                part = bytes(view[:part_size])
            del buffer[:part_size]
            yield part
        chunk = next(rest, None)
        if chunk is None:
            break
        buffer += chunk
    if buffer:
        yield bytes(buffer)


def _chunks(body: StreamingBody) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(READ_CHUNK)
    except (BotoCoreError, ClientError):
        raise ServiceUnavailable(_READ) from None
    finally:
        body.close()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _outage(message: str) -> Iterator[None]:
    """S3 being unreachable or refusing is an outage (503), never a stack trace."""
    try:
        yield
    except (BotoCoreError, ClientError):
        raise ServiceUnavailable(message) from None
