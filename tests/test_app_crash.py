"""kill -9 of the appliance process on the charge path: no double charge, no lost visit, one final state each.

The small version of `appliance bench crash` (which runs 100 per named point and 1,000 at random).
"""

from __future__ import annotations

import dataclasses
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

from appliance.bench.crash import CHARGE_PATH_POINTS, _make_gone, check, crash_run, prepare_day, run_bench
from appliance.payments.gateway import ChargeRequest, new_idempotency_key, new_order_ref
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway
from appliance.vault import RetentionPolicy, SystemClock, Vault
from appliance.vault.keysource import read_key_file

RUNS_PER_POINT = 3
RANDOM_RUNS = 10


def test_kill_9_at_each_named_point_and_at_random_charges_every_visit_once_and_loses_none() -> None:
    result = run_bench(CHARGE_PATH_POINTS, RUNS_PER_POINT, RANDOM_RUNS, seed=1, shoppers=5, workers=2,
                       progress=lambda text: None)  # fmt: skip
    runs = result.by_condition()
    assert set(runs) == {*CHARGE_PATH_POINTS, "random"}
    for point in CHARGE_PATH_POINTS:
        assert len(runs[point]) == RUNS_PER_POINT
        assert all(r.killed for r in runs[point]), [r.detail for r in runs[point] if not r.killed]
    assert len(runs["random"]) == RANDOM_RUNS
    assert sum(r.killed for r in runs["random"]) >= RANDOM_RUNS // 2  # most random kills land while it works
    for run in result.runs:
        assert run.finished, run.detail
        assert run.figures.clean, (run.condition, run.figures)
    assert result.clean and "PASS" in result.lines()[-2]


def test_the_harness_sees_a_double_charge_a_lost_visit_a_visit_left_open_and_a_wrong_amount(tmp_path: Path) -> None:
    """Pins the checker itself: each kind of failure it must report is reported."""
    day = prepare_day(tmp_path / "day", seed=2, shoppers=4)
    work = tmp_path / "run"
    assert crash_run(day, work, "none").figures.clean
    with SandboxProcessor(work / "processor.db") as sandbox:
        assert check(day, work, sandbox).clean
        unknown = dataclasses.replace(day, passes=(*day.passes, ("bmV2ZXItYWRtaXR0ZWQtcGFzcw", "cus_x/pm_y")))
        assert check(unknown, work, sandbox).lost_visits == 1
        nonce, paid = next(n for n, a in day.expected.items() if a > 0), None
        assert check(dataclasses.replace(day, expected={**day.expected, nonce: 1}), work, sandbox).wrong_amounts == 1
        token = dict(day.passes)[nonce]
        gateway = StripeGateway("sk_test_again", sandbox.url)
        paid = gateway.charge(ChargeRequest(new_order_ref(), token, 500, "KRW", new_idempotency_key()))
        gateway.close()
        assert paid.status == "succeeded"
        assert check(day, work, sandbox).double_charges == 2  # charged twice, and a charge the box has no row for
    with Vault.open(work / "vault", read_key_file(work / "master.key"), RetentionPolicy.load(), SystemClock()) as v:
        v.open_visit(entered_at=0.0, party=1, token=None, receipt_key=secrets.token_bytes(32))
    with SandboxProcessor(work / "processor.db") as sandbox:
        assert check(day, work, sandbox).not_one_final_state == 1


def test_an_appliance_whose_exit_status_the_forkserver_lost_is_made_gone_before_its_run_is_repeated() -> None:
    """The harness repeats such a run (exit 255) in a new folder; the lost appliance must not go on
    writing to the old one meanwhile. `_make_gone` kills it and returns once its parent reaped it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    reaper = threading.Thread(target=child.wait)
    reaper.start()
    _make_gone(child.pid)
    reaper.join(5.0)
    assert child.returncode == -signal.SIGKILL
