"""Checking an export's history with nothing but the archive (and, ideally, the log's
published key): ``vault audit verify-export ARCHIVE``.

1. The checkpoint (``history/checkpoint.txt``) carries a valid signature of the trusted key
   (``--key``, as the vault publishes it at ``/audit/public-key``; otherwise the key in the
   archive, which proves only that the archive agrees with itself, and says so).
2. Each history entry (``history/entries.jsonl``) hashes to its ``entryHash`` (SHA-256 of
   the previous hash and the entry's canonical JSON, docs/audit.md), and its inclusion
   proof leads from that hash to the checkpoint's root: the log held exactly this entry.
3. Each AuditEvent of ``bundle.json`` is one of those entries (same id, hash, action,
   outcome and time), and every entry has its AuditEvent.
4. Each document whose DocumentReference gives a size and SHA-1 hash matches its file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from vault.access.chain import HASHED_FIELDS, canonical_fields, entry_hash
from vault.audit import merkle
from vault.audit.checkpoints import format_time, parse_checkpoint_body
from vault.audit.events import INTEGRITY_EXTENSION
from vault.audit.signing import NoteVerifier, SignatureError, open_note


class ExportInvalid(Exception):
    """The first thing in the archive that does not check out."""


@dataclass
class Verified:
    entries: int
    tree_size: int
    documents: int
    key_from_archive: bool
    notes: list[str] = field(default_factory=list)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ExportInvalid("a hash is not valid base64") from None


def _entry_hash(record: dict[str, Any]) -> bytes:
    # The archive holds the SIEM export's records (vault/audit/export.py): what the hash
    # covers, under HASHED_FIELDS' export names.
    values = {field.column: record[field.export] for field in HASHED_FIELDS}
    values["occurred_at"] = datetime.strptime(values["occurred_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return entry_hash(_b64(record["prevHash"]), canonical_fields(**values))


def verify_archive(path: Path, key: str | None = None) -> Verified:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile):
        raise ExportInvalid("not a readable zip archive") from None
    with archive:
        names = set(archive.namelist())
        for needed in ("history/checkpoint.txt", "history/entries.jsonl", "bundle.json"):
            if needed not in names:
                raise ExportInvalid(f"{needed} is missing")
        try:
            verifier_text = key or archive.read("history/verifier-key.txt").decode().strip()
            verifier = NoteVerifier.parse(verifier_text)
            note = archive.read("history/checkpoint.txt").decode()
            checkpoint = parse_checkpoint_body(open_note(note, [verifier]).body)
        except (SignatureError, KeyError, UnicodeDecodeError, ValueError) as error:
            raise ExportInvalid(f"the checkpoint's signature does not verify ({error})") from None
        proven = _entries(archive, checkpoint.tree_size, checkpoint.root_hash)
        documents = _bundle(archive, proven)
    result = Verified(len(proven), checkpoint.tree_size, documents, key_from_archive=key is None)
    if key is None:
        result.notes.append(
            "the checkpoint was checked against the key inside the archive: compare it with "
            "the vault's published key (GET /audit/public-key), or pass --key"
        )
    return result


def _entries(archive: zipfile.ZipFile, size: int, root: bytes) -> dict[str, dict[str, Any]]:
    proven: dict[str, dict[str, Any]] = {}
    with archive.open("history/entries.jsonl") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = json.loads(raw)
                record = line["entry"]
                stated = _b64(record["entryHash"])
                index = record["leafIndex"]
                proof = [_b64(node) for node in line["proof"]]
                computed = _entry_hash(record)
            except (ValueError, KeyError, TypeError):
                raise ExportInvalid(f"history entry on line {number} is malformed") from None
            if computed != stated:
                raise ExportInvalid(f"history entry {record.get('id')} does not match its hash")
            if not isinstance(index, int) or not merkle.verify_inclusion(
                index, size, merkle.leaf_hash(stated), proof, root
            ):
                raise ExportInvalid(
                    f"history entry {record.get('id')} is not in the signed checkpoint"
                )
            proven[str(record["id"])] = record
    return proven


def _integrity(event: dict[str, Any]) -> dict[str, Any]:
    for extension in event.get("extension") or []:
        if str(extension.get("url", "")).endswith(INTEGRITY_EXTENSION):
            return {
                part["url"]: next(iter(v for k, v in part.items() if k.startswith("value")))
                for part in extension.get("extension") or []
            }
    return {}


def _bundle(archive: zipfile.ZipFile, proven: dict[str, dict[str, Any]]) -> int:
    try:
        bundle = json.loads(archive.read("bundle.json"))
    except ValueError:
        raise ExportInvalid("bundle.json is not JSON") from None
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "collection":
        raise ExportInvalid("bundle.json is not a collection Bundle")
    seen: set[str] = set()
    documents = 0
    for item in bundle.get("entry") or []:
        resource = item.get("resource") or {}
        kind = resource.get("resourceType")
        if kind == "AuditEvent":
            event_id = str(resource.get("id"))
            record = proven.get(event_id)
            facts = _integrity(resource)
            if (
                record is None
                or facts.get("entryHash") != record["entryHash"]
                or resource.get("recorded") != record["occurredAt"]
                or (record["action"] in "CRUDE" and resource.get("action") != record["action"])
            ):
                raise ExportInvalid(f"AuditEvent {event_id} is not the history entry it names")
            seen.add(event_id)
        elif kind == "DocumentReference":
            documents += 1
            _document(archive, resource)
    missing = set(proven) - seen
    if missing:
        raise ExportInvalid(f"history entry {min(missing)} has no AuditEvent in bundle.json")
    return documents


def _document(archive: zipfile.ZipFile, resource: dict[str, Any]) -> None:
    for item in resource.get("content") or []:
        attachment = item.get("attachment") or {}
        name = attachment.get("url")
        if not isinstance(name, str):
            raise ExportInvalid("a DocumentReference does not point at a file")
        try:
            data = archive.read(name)
        except KeyError:
            raise ExportInvalid(f"document file {name} is missing") from None
        if "size" in attachment and attachment["size"] != len(data):
            raise ExportInvalid(f"document file {name} does not have its stated size")
        if (
            "hash" in attachment
            and _b64(attachment["hash"]) != hashlib.sha1(data, usedforsecurity=False).digest()
        ):
            raise ExportInvalid(f"document file {name} does not match its stated hash")


__all__ = ["ExportInvalid", "Verified", "format_time", "verify_archive"]
