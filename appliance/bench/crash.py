"""`appliance bench crash`: kill -9 the appliance on the charge path, restart it, and count what went wrong.

Each run plays one simulated shop day through a real appliance process (`appliance run
--recording`), with its own vault (SQLCipher files) and its own sandbox processor. The processor
runs in this, the harness's, process with its state in its own file, so it outlives the appliance
it serves, as a real processor outlives a box. The appliance is killed with SIGKILL either at a
named crash point (WALKOUT_CRASH_AT, the n-th time it is passed) or at a random moment, then
started again and left to finish. Then the harness checks, against the processor's books and a
crash-free replay of the same day:

- double charges: a shopper's token paid more than once, or a processor charge the box has no row for;
- lost visits: a pass the box admitted that has no closed visit with a charge row;
- not in exactly one final state: a charge still pending after the restart finished, a visit
  still open, or a charge row belonging to no pass;
- disagreements: the box says paid and the processor does not, or the other way round;
- wrong amounts: a charge that differs from what the crash-free replay charges;
- tokens left: a final charge whose token still exists.
All must be 0.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from appliance.gate.passes import parse_pass_unchecked
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.vault import RetentionPolicy, SystemClock, Vault
from appliance.vault.crashpoints import CRASH_AFTER_ENV, CRASH_ENV
from appliance.vault.keysource import read_key_file, write_key_file

logger = logging.getLogger(__name__)

CHARGE_PATH_POINTS = (
    "visit.pass_stored",
    "visit.token_stored",
    "cart.line_stored",
    "visit.closed",
    "charge.sending",
    "charge.answered",
    "charge.stored",
    "token.deleted",
)
"""The charge path's named crash points, in the order a visit passes them (vault, recorder and outbox)."""

SCENARIO = "rush"
RUN_TIMEOUT_S = 180.0
LOST_BY_FORKSERVER = 255  # the exit code multiprocessing gives a child whose status its forkserver lost
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Day:
    """The simulated day every run plays: where its recording is, its passes and what each should pay."""

    folder: Path
    config_raw: dict[str, Any] = field(hash=False)
    passes: tuple[tuple[str, str], ...]
    expected: dict[str, int] = field(hash=False)
    seed: int

    @property
    def paid(self) -> int:
        """Visits with something to pay."""
        return sum(1 for amount in self.expected.values() if amount > 0)


@dataclass(frozen=True, slots=True)
class Figures:
    """What went wrong in one run (or many, added up); every field must be 0."""

    double_charges: int = 0
    lost_visits: int = 0
    not_one_final_state: int = 0
    disagreements: int = 0
    wrong_amounts: int = 0
    tokens_left: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Figures)))

    @property
    def clean(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(Figures))


@dataclass(frozen=True, slots=True)
class RunResult:
    """One run: its condition, whether the kill landed, whether the restart finished, and the figures."""

    condition: str
    killed: bool
    finished: bool
    figures: Figures
    first_s: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Every run of a bench, with the day it played."""

    day: Day
    runs: tuple[RunResult, ...]
    random_window_s: float

    @property
    def clean(self) -> bool:
        return all(r.finished and r.figures.clean for r in self.runs) and all(
            r.killed for r in self.runs if r.condition != "random"
        )

    def by_condition(self) -> dict[str, list[RunResult]]:
        out: dict[str, list[RunResult]] = {}
        for run in self.runs:
            out.setdefault(run.condition, []).append(run)
        return out

    def lines(self) -> list[str]:
        out = [
            f"crash harness: simulated '{SCENARIO}' day, seed {self.day.seed}, {len(self.day.passes)} visits "
            f"({self.day.paid} with something to pay); the appliance is a child process (`appliance run`, forked "
            "from a preloaded server) killed with SIGKILL, the sandbox processor lives in the harness process with "
            "its state in its own file"
        ]
        total = Figures()
        for condition, runs in self.by_condition().items():
            f = Figures()
            for r in runs:
                f += r.figures
            total += f
            landed = sum(r.killed for r in runs)
            finished = sum(r.finished for r in runs)
            where = f"random moment (0-{self.random_window_s:.1f} s)" if condition == "random" else condition
            out.append(
                f"{where:<28} runs {len(runs):4d}: kill landed {landed}/{len(runs)}, restart finished "
                f"{finished}/{len(runs)}, double charges {f.double_charges}, lost visits {f.lost_visits}, "
                f"not in exactly one final state {f.not_one_final_state}, box/processor disagree {f.disagreements}, "
                f"wrong amounts {f.wrong_amounts}, tokens left {f.tokens_left}"
            )
            for r in runs:
                if r.detail:
                    out.append(f"    {r.detail}")
        out.append(
            f"total over {len(self.runs)} runs: double charges {total.double_charges}, lost visits "
            f"{total.lost_visits}, visits not in exactly one final state {total.not_one_final_state} "
            f"(all must be 0): {'PASS' if self.clean else 'FAIL'}"
        )
        out.append(
            f"conditions: each named point killed at its n-th passing (n = run number modulo the visits to pay); "
            "random kills uniform over the time a crash-free run takes from 'appliance started' to its end; "
            f"{os.cpu_count()} CPUs"
        )
        return out


def prepare_day(folder: Path, seed: int, shoppers: int) -> Day:
    """Simulate the day, write its recording, and replay it once without crashes for the expected amounts."""
    from appliance.replay import replay
    from appliance.sim import simulate, write_recording
    from appliance.sim.live import as_recording

    out = simulate(SCENARIO, seed, shoppers=shoppers, duration_s=24.0 * shoppers)
    write_recording(out, folder)
    receipts = replay(as_recording(out)).receipts
    passes = tuple(
        (claims.nonce, claims.tok)
        for claims in (parse_pass_unchecked(e.pass_text) for e in out.gate if e.kind == "entry")
    )
    return Day(folder, out.config_raw, passes, {r.visit: r.total for r in receipts}, seed)


def _store_toml(day: Day, work: Path, api_base: str) -> Path:
    raw = dict(day.config_raw)
    raw["vault"] = {"folder": str(work / "vault"), "key_file": str(work / "master.key"), "retention_interval_min": 60}
    raw["payments"] = {
        "processor": "sandbox",
        "api_base": api_base,
        "read_timeout_s": 10.0,
        "retry_first_s": 0.1,
        "retry_max_s": 1.0,
    }
    path = work / "store.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


# The appliance processes are forked from a server that has already imported the appliance, so each
# run costs the appliance's own work, not two seconds of interpreter start-up and imports.
_PRELOAD = ["appliance.cli", "appliance.cli.app", "appliance.app", "appliance.sim.recording",
            "appliance.payments.stripe_gateway", "appliance.vault.opening"]  # fmt: skip
_STARTED = "appliance started"


class _StartedMarker(io.TextIOBase):
    """The child's stdout: passes text on, and raises `started` when the appliance says it started."""

    def __init__(self, out: io.TextIOBase, started: Any) -> None:
        self._out = out
        self._started = started

    def write(self, text: str) -> int:
        if _STARTED in text:
            self._started.set()
        return self._out.write(text)

    def flush(self) -> None:
        self._out.flush()


def appliance_process(argv: list[str], crash: dict[str, str], log: str, started: Any) -> None:
    """Run `appliance ARGV` in this (forked) process, as the command line would, with the crash points set."""
    from appliance.cli import main

    for name in (CRASH_ENV, CRASH_AFTER_ENV):
        os.environ.pop(name, None)
    os.environ.update(crash)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = _StartedMarker(io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True), started)
    sys.exit(main(argv))


@dataclass(slots=True)
class _Child:
    process: Any
    started: Any

    def wait_started(self, timeout_s: float) -> float | None:
        """When the child said it started (monotonic time), or None if it ended or timed out first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.started.wait(0.01):
                return time.monotonic()
            if not self.process.is_alive():
                return None
        return None

    def finish(self, timeout_s: float) -> int:
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        code = int(self.process.exitcode)
        if code == LOST_BY_FORKSERVER:
            _make_gone(self.process.pid)
        return code

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)


def _make_gone(pid: int, timeout_s: float = 10.0) -> None:
    """Kill process `pid` if it still runs, and wait until it is gone (its parent reaps it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _start(day: Day, store: Path, work: Path, name: str, crash: dict[str, str]) -> _Child:
    ctx = multiprocessing.get_context("forkserver")
    argv = ["run", "--config", str(store), "--recording", str(day.folder), "--settle-timeout", "60"]
    started = ctx.Event()
    process = ctx.Process(target=appliance_process, args=(argv, crash, str(work / f"{name}.log"), started))
    process.start()
    return _Child(process, started)


def crash_run(day: Day, work: Path, condition: str, *, hit: int = 0, kill_after_s: float | None = None) -> RunResult:
    """One run: start, kill (at `condition`'s point after `hit` passes, or after `kill_after_s`), restart, check.

    `condition` "none" runs once without any kill (the harness's own check of a clean day).
    A run whose first appliance's exit status the forkserver lost (exit 255: neither killed nor
    exited on its own) says nothing about the box: it is repeated once, in a new folder, after
    that appliance is made sure to be gone.
    """
    result, code = _crash_run_once(day, work, condition, hit, kill_after_s)
    if code != LOST_BY_FORKSERVER:
        return result
    logger.warning("the forkserver lost an appliance's exit status in run %s; the run is repeated", condition)
    return _crash_run_once(day, work.with_name(work.name + "-again"), condition, hit, kill_after_s)[0]


def _crash_run_once(day: Day, work: Path, condition: str, hit: int,
                    kill_after_s: float | None) -> tuple[RunResult, int]:
    """`crash_run` once: its result, and the first appliance's exit code."""
    work.mkdir(parents=True)
    write_key_file(work / "master.key", os.urandom(32))
    with SandboxProcessor(work / "processor.db") as sandbox:
        store = _store_toml(day, work, sandbox.url)
        crash = {} if condition in ("random", "none") else {CRASH_ENV: condition, CRASH_AFTER_ENV: str(hit)}
        first = _start(day, store, work, "first", crash)
        started = first.wait_started(RUN_TIMEOUT_S)
        if condition == "random" and started is not None and kill_after_s is not None:
            first.process.join(max(0.0, started + kill_after_s - time.monotonic()))
            first.kill()
        code = first.finish(RUN_TIMEOUT_S)
        first_s = time.monotonic() - started if started is not None else 0.0
        killed = code == -signal.SIGKILL
        detail = ""
        if condition == "none":
            finished = code == 0
        else:
            second = _start(day, store, work, "second", {})
            again = second.finish(RUN_TIMEOUT_S)
            finished = again == 0
            if not finished:
                detail = f"{condition}: the restarted appliance exited with {again} (see {work})"
        if condition not in ("random", "none") and not killed:
            log = (work / "first.log").read_text(errors="replace").strip().splitlines()[-5:]
            detail = f"{condition} (after {hit}): the point was never reached (exit {code}); its log ends: " + \
                " | ".join(log)
        figures = check(day, work, sandbox)
    return RunResult(condition, killed, finished, figures, first_s, detail), code


def _processor_charges(sandbox: SandboxProcessor) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after: list[tuple[str, str]] = []
    while True:
        page = sandbox.ledger.get("/v1/payment_intents", [("limit", "100"), *after]).body
        out.extend(page["data"])
        if not page["has_more"]:
            return out
        after = [("starting_after", page["data"][-1]["id"])]


def check(day: Day, work: Path, sandbox: SandboxProcessor) -> Figures:
    """Compare the box's vault with the processor's books and the crash-free amounts (see the module docstring)."""
    intents = _processor_charges(sandbox)
    key = read_key_file(work / "master.key")
    with Vault.open(work / "vault", key, RetentionPolicy.load(), SystemClock()) as vault:
        charges = {c.order_ref: c for c in vault.charges()}
        paid_per_token: Counter[str] = Counter()
        paid_per_ref: Counter[str] = Counter()
        unknown = 0
        for intent in intents:
            ref = intent.get("metadata", {}).get("order_ref", "")
            if ref not in charges:
                unknown += 1
            if intent["status"] == "succeeded":
                paid_per_token[f"{intent['customer']}/{intent['payment_method']}"] += 1
                paid_per_ref[ref] += 1
        double = unknown + sum(n - 1 for n in paid_per_token.values() if n > 1)
        lost = not_one = disagree = wrong = 0
        linked: set[str] = set()
        for nonce, _token in day.passes:
            known = vault.admitted_pass(nonce)
            charge = None if known is None else vault.charge_for_visit(known.visit)
            if charge is None:
                lost += 1
                continue
            linked.add(charge.order_ref)
            if not charge.final:
                not_one += 1
            if charge.amount != day.expected.get(nonce, -1):
                wrong += 1
            if (charge.state == "succeeded") != (paid_per_ref[charge.order_ref] > 0):
                disagree += 1
        not_one += len(set(charges) - linked) + len(vault.open_visits())
        tokens = len(vault.final_charges_with_tokens())
    return Figures(double, lost, not_one, disagree, wrong, tokens)


def run_bench(
    points: Sequence[str],
    runs: int,
    randoms: int,
    *,
    seed: int = 1,
    shoppers: int = 5,
    workers: int = 2,
    progress: Progress | None = None,
    keep_failures: Path | None = None,
) -> BenchResult:
    """Every named point `runs` times and `randoms` random kills, `workers` at a time; see the module docstring.

    A run with a problem has its folder (vault, processor state, both processes' logs) copied to
    `keep_failures`, if given.
    """
    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    logging.getLogger("appliance.payments.sandbox_server").setLevel(logging.WARNING)
    multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="walkout-crash-") as tmp:
        root = Path(tmp)
        say(f"simulating the day (seed {seed}, {shoppers} visits) and replaying it once for the expected amounts")
        day = prepare_day(root / "day", seed, shoppers)
        clean = crash_run(day, root / "clean", "none")
        if not (clean.finished and clean.figures.clean):
            return BenchResult(day, (clean,), 0.0)
        window = clean.first_s
        plan: list[tuple[str, int, float | None]] = [
            (point, k % max(1, day.paid), None) for k in range(runs) for point in points
        ]
        plan += [("random", 0, rng.uniform(0.05, window)) for _ in range(randoms)]
        results: list[RunResult] = []
        done = threading.Lock()

        def one(i: int) -> RunResult:
            condition, hit, after = plan[i]
            work = root / f"run{i}"
            result = crash_run(day, work, condition, hit=hit, kill_after_s=after)
            if keep_failures is not None and not (result.finished and result.figures.clean):
                shutil.copytree(work, keep_failures / work.name, dirs_exist_ok=True)
            shutil.rmtree(work, ignore_errors=True)  # a thousand runs' vaults would fill the disk
            with done:
                results.append(result)
                if len(results) % 10 == 0 or len(results) == len(plan):
                    bad = sum(not (r.finished and r.figures.clean) for r in results)
                    say(f"  {len(results)}/{len(plan)} runs, {bad} with a problem")
            return result

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            ordered = list(pool.map(one, range(len(plan))))
        return BenchResult(day, tuple(ordered), window)
