"""The failover drill, shortened for the test command (a few seconds of load between
kills instead of a minute; docs/scaling.md has the full run): three primaries killed
with SIGKILL under eight ingest clients, failing over back and forth, and nothing the
vault acknowledged is lost or altered, no answer is a 5xx other than a clean 503, no
request hangs, the audit log verifies, and writes never stop for more than 30 s."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.hardening.ha_cluster import PG_AUTOCTL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_three_failovers_under_load_lose_nothing_and_never_answer_500() -> None:
    assert shutil.which(PG_AUTOCTL), "pg_auto_failover is missing: scripts/test installs it"
    done = subprocess.run(  # noqa: PLW1510 - the exit code is checked with the output
        [str(ROOT / "scripts" / "ha-drill"), "--load-seconds", "6", "--pause", "0.2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-6000:]
    result = json.loads(lines[-1])
    context = json.dumps(result) + "\n" + done.stderr[-6000:]
    assert result["failovers"] == 3, context
    assert result["acknowledged"] > 0, context
    assert result["lost"] == 0, context
    assert result["corrupt"] == 0, context
    assert result["http_5xx_other_than_503"] == 0, context
    assert result["http_503_without_outcome_or_retry_after"] == 0, context
    assert result["timeouts"] == 0, context
    assert result["transport_errors"] == 0, context
    assert result["audit_verified"] is True, context
    assert result["unavailable_s_max"] <= 30, context
    assert done.returncode == 0, context
