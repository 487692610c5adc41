"""Which old master keys may be destroyed, and when.

A master key that no patient key references any more still opens every data backup taken
before the rotation moved the patient keys away from it. So it is destroyed only once the
backup retention period has passed since it stopped being current -- since its successor
was made -- when no backup that is still kept can need it. A key whose successor's date the
provider cannot tell is kept unless the retention asked for is zero: destroying a key is the
one step that cannot be undone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vault.db import Session
from vault.storage.keys import repository
from vault.storage.keys.provider import KeyProvider


@dataclass(frozen=True)
class Kept:
    master_key_id: str
    # When it may go, if known.
    retirable_from: datetime | None

    def describe(self) -> str:
        if self.retirable_from is None:
            return (
                f"kept {self.master_key_id}: the key provider does not say when it stopped "
                "being current"
            )
        return (
            f"kept {self.master_key_id}: backups taken before "
            f"{self.retirable_from.date().isoformat()} may still need it"
        )


@dataclass(frozen=True)
class Retirement:
    retired: list[str] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)


def retire_unused_master_keys(
    provider: KeyProvider,
    session: Session,
    retention: timedelta,
    now: datetime | None = None,
) -> Retirement:
    """Destroy the master keys that are not current, that no patient key references, and
    that stopped being current at least ``retention`` ago."""
    now = now or datetime.now(UTC)
    in_use = repository.master_keys_in_use(session)
    current = provider.current_master_key_id()
    ids = provider.master_key_ids()
    retired: list[str] = []
    kept: list[Kept] = []
    for position, key_id in enumerate(ids):
        if key_id == current or key_id in in_use:
            continue
        # Oldest first: the next key is the one that replaced it (or, if that one is gone
        # already, a later one, which only makes the wait longer).
        successor = ids[position + 1] if position + 1 < len(ids) else None
        superseded = provider.master_key_created_at(successor) if successor else None
        if retention <= timedelta(0):
            # The operator said no backup is kept (or takes it on themselves).
            provider.retire(key_id)
            retired.append(key_id)
        elif superseded is None:
            kept.append(Kept(key_id, None))
        elif now - superseded < retention:
            kept.append(Kept(key_id, superseded + retention))
        else:
            provider.retire(key_id)
            retired.append(key_id)
    return Retirement(retired, kept)
