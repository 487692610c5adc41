"""The failover drill (``scripts/ha-drill``, docs/scaling.md): a pg_auto_failover cluster
(a monitor, a primary, a synchronous standby), two ``vault serve`` processes connected to
it by a multi-host URL with ``target_session_attrs=read-write``, and ingest clients that
alternate between the two processes. Mid-load the primary's node is killed with SIGKILL;
the monitor promotes the standby; the vault, never restarted, goes on; the killed node
comes back as the new standby; and again, failing over back and forth.

Then every acknowledged document must read back byte-identical and ``vault audit
verify`` must pass. The last line printed is one JSON object; the exit code is 0 only
when nothing acknowledged was lost or corrupted, no answer was a 5xx other than a clean
503 (an OperationOutcome with Retry-After), no request hung, and writes never stopped
for longer than ``--max-unavailable`` seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.factories import Tokens, ins, patient_resource
from tests.hardening.ha_cluster import AutoFailoverCluster
from tests.hardening.load import Acknowledged, Ledger, Sent, acknowledgement, ingest, kind_of
from tests.hardening.servers import BASE_URL, VaultServer, run_vault, vault_env
from vault.identity.tokens import EmbeddedIssuer
from vault.migrations import upgrade

PATIENTS = 4
# An impatient client: it does not wait the Retry-After the vault asks for, so that the
# drill measures how soon writes succeed again rather than how long clients sleep.
RETRY_PAUSE_S = 0.25


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@dataclass
class DrillLedger(Ledger):
    """The load's outcome, with when each write succeeded and what went wrong how."""

    successes: list[float] = field(default_factory=list)
    timeouts: int = 0
    unclean_503: int = 0
    # How long the slowest 503 took to come: a switchover must fail fast, not hang.
    slowest_503_s: float = 0.0

    def first_success_after(self, moment: float) -> float:
        with self.lock:
            return min(t for t in self.successes if t > moment)

    def last_success(self) -> float:
        with self.lock:
            return self.successes[-1] if self.successes else 0.0


def drill_writer(
    next_base: Callable[[], str],
    tokens: Tokens,
    patients: list[str],
    ledger: DrillLedger,
    stop: threading.Event,
    *,
    seed: int,
    size: int,
    pause: float,
    timeout: float,
) -> None:
    with httpx.Client(timeout=timeout) as http:
        for number in itertools.count():
            if stop.is_set():
                return
            sent = Sent(
                f"urn:uuid:{uuid.uuid4()}",
                patients[(seed + number) % len(patients)],
                b"%PDF-1.7 " + os.urandom(size),
            )
            with ledger.lock:
                ledger.sent[sent.master] = sent
            asked = time.monotonic()
            try:
                response = ingest(http, next_base(), tokens, sent, bundle=(seed + number) % 2 == 0)
            except httpx.TimeoutException:
                with ledger.lock:
                    ledger.timeouts += 1
                continue
            except httpx.TransportError:
                with ledger.lock:
                    ledger.transport_errors += 1
                continue
            ledger.record(response)
            if response.is_success:
                acknowledged = acknowledgement(sent, response)
                with ledger.lock:
                    ledger.acknowledged[sent.master] = acknowledged
                    ledger.successes.append(time.monotonic())
            elif response.status_code == 503:
                with ledger.lock:
                    ledger.slowest_503_s = max(ledger.slowest_503_s, time.monotonic() - asked)
                if kind_of(response) != "OperationOutcome" or not response.headers.get(
                    "Retry-After"
                ):
                    with ledger.lock:
                        ledger.unclean_503 += 1
                stop.wait(RETRY_PAUSE_S)
            stop.wait(pause)


def alternating(bases: list[str]) -> Callable[[], str]:
    turn = itertools.count()
    lock = threading.Lock()

    def next_base() -> str:
        with lock:
            return bases[next(turn) % len(bases)]

    return next_base


def longest_gap(times: list[float], start: float, end: float) -> float:
    points = [start, *sorted(t for t in times if start <= t <= end), end]
    return max(later - earlier for earlier, later in itertools.pairwise(points))


def read_back(
    bases: list[str], tokens: Tokens, acknowledged: list[Acknowledged], timeout: float
) -> tuple[int, int]:
    """(lost, corrupt) among the acknowledged documents, read through both processes."""
    headers = tokens.professional()

    def check(http: httpx.Client, number: int, document: Acknowledged) -> str:
        for _ in range(3):
            response = http.get(
                f"{bases[number % len(bases)]}/fhir/Binary/{document.binary_id}",
                headers=headers,
            )
            if response.status_code == 200:
                return "ok" if response.content == document.sent.content else "corrupt"
            if response.status_code == 404:
                return "lost"
            time.sleep(1)
        return "lost"

    # One client for all the threads: httpx clients are thread-safe, and each new one
    # costs a TLS context.
    with httpx.Client(timeout=timeout) as http, ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda item: check(http, *item), enumerate(acknowledged)))
    return outcomes.count("lost"), outcomes.count("corrupt")


def run(options: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vault-ha-drill-"))
    cluster = AutoFailoverCluster()
    servers: list[VaultServer] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    ledger = DrillLedger()
    result: dict[str, Any] = {"engine": "pg_auto_failover", "vault_processes": 2}
    try:
        started = time.monotonic()
        say(f"starting the cluster in {cluster.root}")
        cluster.start()
        result["cluster_start_s"] = round(time.monotonic() - started, 1)
        url = cluster.url()
        upgrade(url)
        data_dir = work / "data"
        env = vault_env(url, data_dir, "db:", VAULT_AUDIT_CHECKPOINT_SECONDS="5")
        tokens = Tokens(EmbeddedIssuer(data_dir, BASE_URL, "vault"))
        servers = [VaultServer(env, work / f"vault-{n}.log") for n in (1, 2)]
        servers[0].start()
        patients = []
        for seed in range(1, PATIENTS + 1):
            # Through the first process alone: the keyring is made once, then shared.
            created = httpx.post(
                f"{servers[0].url}/fhir/Patient",
                json=patient_resource(ins(seed)),
                headers=tokens.patient(ins(seed)),
                timeout=options.client_timeout,
            )
            created.raise_for_status()
            patients.append(created.headers["Location"].split("/Patient/")[1].split("/")[0])
        servers[1].start()
        bases = [server.url for server in servers]
        say(f"vault processes at {', '.join(bases)}; {options.writers} ingest clients")

        threads = [
            threading.Thread(
                target=drill_writer,
                args=(alternating(bases), tokens, patients, ledger, stop),
                kwargs={
                    "seed": number,
                    "size": options.size,
                    "pause": options.pause,
                    "timeout": options.client_timeout,
                },
                daemon=True,
            )
            for number in range(options.writers)
        ]
        load_started = time.monotonic()
        for thread in threads:
            thread.start()
        promotions: list[float] = []
        resumed: list[float] = []
        rejoins: list[float] = []
        for number in range(1, options.failovers + 1):
            stop.wait(options.load_seconds)
            cluster.wait(cluster.healthy, 180, "a primary with a synchronous standby")
            victim = cluster.primary()
            assert victim is not None
            say(
                f"failover {number}: {ledger.acknowledged_count()} acknowledged; "
                f"killing {victim} (SIGKILL)"
            )
            killed = time.monotonic()
            cluster.kill(victim)
            cluster.wait(lambda victim=victim: cluster.promoted_after(victim), 120, "promotion")
            promoted = time.monotonic()
            promotions.append(round(promoted - killed, 1))
            # The first write acknowledged once the standby was promoted (one in flight
            # at the kill may have been acknowledged just after it).
            cluster.wait(lambda promoted=promoted: ledger.last_success() > promoted, 120, "a write")
            resumed.append(round(ledger.first_success_after(promoted) - killed, 1))
            say(
                f"failover {number}: promoted in {promotions[-1]} s, writes back in {resumed[-1]} s"
            )
            back = time.monotonic()
            cluster.restart(victim)
            cluster.wait(cluster.healthy, 180, f"{victim} to rejoin as the standby")
            rejoins.append(round(time.monotonic() - back, 1))
            say(f"failover {number}: {victim} rejoined as the standby in {rejoins[-1]} s")
            result["failovers"] = number
        stop.wait(options.load_seconds)
        stop.set()
        for thread in threads:
            thread.join(timeout=options.client_timeout * 2)
        load_ended = time.monotonic()
        hung_threads = sum(thread.is_alive() for thread in threads)

        acknowledged = list(ledger.acknowledged.values())
        say(f"reading back {len(acknowledged)} acknowledged documents")
        lost, corrupt = read_back(bases, tokens, acknowledged, options.client_timeout)
        say(f"lost {lost}, corrupt {corrupt}; verifying the audit log")
        verified = run_vault(env, "audit", "verify")
        say(f"vault audit verify: exit {verified.returncode}")
        statuses = ledger.statuses
        result.update(
            {
                "failovers": result.get("failovers", 0),
                "acknowledged": len(acknowledged),
                "lost": lost,
                "corrupt": corrupt,
                "unavailable_s_max": round(
                    longest_gap(ledger.successes, load_started, load_ended), 1
                ),
                "http_5xx_other_than_503": sum(1 for s in statuses if s >= 500 and s != 503),
                "http_503": statuses.count(503),
                "http_503_without_outcome_or_retry_after": ledger.unclean_503,
                "slowest_503_s": round(ledger.slowest_503_s, 2),
                "other_refusals": sum(1 for s in statuses if 400 <= s < 500),
                "timeouts": ledger.timeouts + hung_threads,
                "transport_errors": ledger.transport_errors,
                "audit_verified": verified.returncode == 0,
                "promotion_s": promotions,
                "writes_resumed_s": resumed,
                "rejoin_s": rejoins,
                "load_s": round(load_ended - load_started, 1),
                "writers": options.writers,
            }
        )
        if verified.returncode != 0:
            say(f"vault audit verify failed: {verified.stdout[-2000:]}{verified.stderr[-2000:]}")
        for server in servers:
            if server.process is None or server.process.poll() is not None:
                result["vault_restarted"] = True
    except Exception as error:  # noqa: BLE001 - any failure still ends in the JSON line
        result["error"] = f"{type(error).__name__}: {str(error)[:4000]}"
        say(result["error"])
        for server in servers:
            say(f"--- {server.log.name}\n{server.tail()}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=options.client_timeout * 2)
        for server in servers:
            server.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["ok"] = passed(result, options)
    return result


def passed(result: dict[str, Any], options: argparse.Namespace) -> bool:
    return (
        "error" not in result
        and "vault_restarted" not in result
        and result.get("failovers") == options.failovers
        and result.get("acknowledged", 0) > 0
        and result.get("lost") == 0
        and result.get("corrupt") == 0
        and result.get("http_5xx_other_than_503") == 0
        and result.get("http_503_without_outcome_or_retry_after") == 0
        and result.get("other_refusals") == 0
        and result.get("timeouts") == 0
        and result.get("transport_errors") == 0
        and result.get("audit_verified") is True
        and result.get("unavailable_s_max", float("inf")) <= options.max_unavailable
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/ha-drill",
        description="Kill the PostgreSQL primary under load, again and again, and check "
        "that the vault lost nothing it acknowledged. Needs pg_auto_failover "
        "(Debian postgresql-15-auto-failover). The last line is one JSON object.",
    )
    parser.add_argument("--failovers", type=int, default=3, help="primaries to kill (3)")
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=60,
        help="ingest this long before each kill and after the last one (60)",
    )
    parser.add_argument("--writers", type=int, default=8, help="ingest clients (8)")
    parser.add_argument("--size", type=int, default=8192, help="bytes per document (8192)")
    parser.add_argument(
        "--pause", type=float, default=0.05, help="each client's pause between requests (0.05)"
    )
    parser.add_argument(
        "--max-unavailable",
        type=float,
        default=30,
        help="longest time with no successful write that still passes (30)",
    )
    parser.add_argument(
        "--client-timeout", type=float, default=20, help="a request slower than this hung (20)"
    )
    options = parser.parse_args(argv)
    result = run(options)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
