"""Group commit of the audit entries of reads (docs/audit.md, "Reads: group commit").

A read changes nothing but the log, so its entry need not share a transaction with the
read: what must hold is that no byte of it leaves before its entry is durable. Reads ready
to go out together hand their records to one committer thread per process, which appends
them all in one transaction -- ``AuditService.append_many``: the entries ``append`` would
write one by one, the same chains, the same order of chain locks for everyone, in two
statements whatever the group's size -- and commits once: one WAL flush for the group. Each
read waits for its own entry's commit before its response goes out; when the group's
transaction fails, every read of the group fails (503) and none releases a byte.

While one group commits, the next gathers, so under load the groups grow by themselves
and at rest a read waits for nothing but its own commit.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from vault.access.journal import AuditService
from vault.access.records import AuditRecord, WrittenEntry
from vault.db import DBAPIError, Engine, OperationalError, SessionFactory
from vault.errors import ServiceUnavailable

# Records one transaction takes at most: a bound on what one failure fails.
MAX_GROUP = 128
# A read that waits longer than this for its entry fails rather than hang its client.
WAIT_SECONDS = 30.0
# A deadlock between two processes' groups is retried (nothing was committed), once.
ATTEMPTS = 2

log = logging.getLogger("vault.audit")


class AuditUnavailable(ServiceUnavailable):
    """The read's audit entry could not be committed: the read does not happen."""

    def __init__(self) -> None:
        super().__init__("The access could not be recorded; try again later")


class Pending:
    """A read's audit entry on its way to the log. ``wait`` returns once it is committed
    and raises ``AuditUnavailable`` when it will not be."""

    def __init__(self, future: Future[WrittenEntry] | None = None) -> None:
        self._future = future

    def wait(self) -> None:
        if self._future is None:
            return
        try:
            self._future.result(timeout=WAIT_SECONDS)
        except FutureTimeout:
            raise AuditUnavailable from None
        except AuditUnavailable:
            raise
        except Exception:  # noqa: BLE001 - whatever failed, the read must not go ahead
            raise AuditUnavailable from None


# Pending.wait() when the entry was written in the caller's own transaction.
WRITTEN = Pending()


class Deferred:
    """An allowed read's record, handed to the committer only once the read is ready to
    go out (so that a read that fails on the way, a shredded key say, leaves no entry of
    a success): ``wait`` hands it over and returns once it is committed."""

    def __init__(self, group: GroupCommit, record: AuditRecord) -> None:
        self._group = group
        self._record = record

    def wait(self) -> None:
        self._group.submit(self._record).wait()


class GroupCommit:
    """One per process; its thread starts with the first record."""

    def __init__(
        self,
        audit: AuditService,
        session_factory: SessionFactory,
        engine: Engine | None = None,
    ) -> None:
        self._audit = audit
        self._session_factory = session_factory
        self._engine = engine
        self._waiting: list[tuple[AuditRecord, Future[WrittenEntry]]] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, record: AuditRecord) -> Pending:
        future: Future[WrittenEntry] = Future()
        with self._ready:
            if self._closed:
                raise AuditUnavailable
            self._waiting.append((record, future))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="audit-group-commit", daemon=True
                )
                self._thread.start()
            self._ready.notify()
        return Pending(future)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=WAIT_SECONDS)
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return
                group = self._waiting[:MAX_GROUP]
                del self._waiting[:MAX_GROUP]
            self._commit(group)

    def _commit(self, group: list[tuple[AuditRecord, Future[WrittenEntry]]]) -> None:
        # append_many claims the chain heads in the chain keys' order, as every process
        # does, so that two groups holding the same patients queue rather than deadlock.
        records = [record for record, _future in group]
        for attempt in range(ATTEMPTS):
            try:
                with self._session_factory() as session, session.begin():
                    entries = self._audit.append_many(session, records)
            except (OperationalError, DBAPIError) as error:
                if attempt + 1 < ATTEMPTS and _deadlock(error):
                    continue
                self._fail(group, error)
                return
            except Exception as error:  # noqa: BLE001 - each read is told, none goes ahead
                self._fail(group, error)
                return
            for (_record, future), entry in zip(group, entries, strict=True):
                future.set_result(entry)
            return

    @staticmethod
    def _fail(group: list[tuple[AuditRecord, Future[WrittenEntry]]], error: BaseException) -> None:
        log.warning("audit group of %d reads failed: %s", len(group), type(error).__name__)
        for _record, future in group:
            future.set_exception(AuditUnavailable())


def _deadlock(error: DBAPIError) -> bool:
    return getattr(error.orig, "sqlstate", None) in ("40P01", "40001")
