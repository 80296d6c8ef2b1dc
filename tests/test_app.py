"""The appliance process: a simulated day charged as the replay says, restarts that charge nothing twice, live MQTT."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from appliance.app import Appliance, LiveSource, RecordingSource, RestartSafeReplayCache, VaultAdmissions, review_code
from appliance.config import parse_config
from appliance.config.model import MqttSettings
from appliance.events import CartChange, Evidence, GateEvent, Receipt
from appliance.gate.clock import WallClock
from appliance.gate.passes import PassClaims, issue_pass, parse_pass_unchecked
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway
from appliance.replay import ReplayResult, replay
from appliance.sim.recording import Recording
from appliance.vault import Charge, RetentionPolicy, SystemClock, Vault


@pytest.fixture(scope="module")
def day() -> tuple[Recording, ReplayResult]:
    from appliance.sim import simulate
    from appliance.sim.live import as_recording

    recording = as_recording(simulate("rush", 2, shoppers=5, duration_s=120.0))
    return recording, replay(recording)


@pytest.fixture
def vault(tmp_path: Path, sandbox: SandboxProcessor) -> Iterator[Vault]:
    with Vault.open(tmp_path / "vault", secrets.token_bytes(32), RetentionPolicy.load(), sandbox.clock) as v:
        yield v


@pytest.fixture
def gateway(sandbox: SandboxProcessor) -> Iterator[StripeGateway]:
    g = StripeGateway("sk_test_app", sandbox.url)
    yield g
    g.close()


def wait_until(done: Callable[[], bool], limit_s: float = 20.0) -> None:
    """Wait for other threads' work to show (never to move time)."""
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


class StopAfter:
    """A LoopObserver that raises a flag once `n` charge rows were written."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reached = threading.Event()

    def exit_seen(self, event: GateEvent) -> None:
        pass

    def receipt_ready(self, receipt: Receipt, now: float) -> None:
        pass

    def charge_written(self, receipt: Receipt, charge: Charge, now: float) -> None:
        self.n -= 1
        if self.n <= 0:
            self.reached.set()


def check_day(vault: Vault, sandbox: SandboxProcessor, recording: Recording, expected: ReplayResult) -> None:
    """Every pass: one closed visit, charged what the replay charges, once; its lines and review items stored."""
    per_ref = sandbox.ledger.summary()["per_order_ref"]
    receipts = {r.visit: r for r in expected.receipts}
    charged = set()
    for entry in (e for e in recording.gate if e.kind == "entry"):
        nonce = parse_pass_unchecked(entry.pass_text).nonce
        known = vault.admitted_pass(nonce)
        assert known is not None and known.visit != nonce
        charge = vault.charge_for_visit(known.visit)
        assert charge is not None and charge.final, nonce
        receipt = receipts[nonce]
        assert (charge.amount, charge.lines) == (receipt.total, receipt.lines)
        assert charge.state == ("succeeded" if receipt.total else "none_due")
        assert per_ref.get(charge.order_ref, 0) == (1 if receipt.total else 0)
        units: Counter[str] = Counter()
        grams: Counter[str] = Counter()
        for line in vault.cart_lines(known.visit):
            units[line.sku] += line.qty
            grams[line.sku] += line.grams
        assert {s: n for s, n in units.items() if n} == {ln.sku: ln.qty for ln in receipt.lines if ln.qty}
        assert all(abs(grams[ln.sku] - ln.grams) < 0.11 for ln in receipt.lines if ln.grams)
        review = [r for r in vault.open_review_items() if r.visit == known.visit]
        assert sorted((r.reason, r.candidates) for r in review) == sorted(
            (review_code(r.reason), r.candidates) for r in receipt.review)
        charged.add(charge.order_ref)
    assert set(per_ref) <= charged and vault.open_visits() == []
    assert vault.final_charges_with_tokens() == []
    assert vault.verify_audit().ok


def test_a_simulated_day_is_charged_exactly_as_the_replay_says_and_logs_no_secret(
    day: tuple[Recording, ReplayResult], vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    recording, expected = day
    assert sum(r.total > 0 for r in expected.receipts) >= 3 and any(r.review for r in expected.receipts)
    app = Appliance(recording.config, RecordingSource(recording), vault=vault, gateway=gateway,
                    clock=sandbox.clock, retention=False)  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        assert app.run(60.0)
    check_day(vault, sandbox, recording, expected)
    assert app.recorder is not None and app.recorder.recognised == 0
    assert "paid" in caplog.text  # the log says what happened...
    secrets_seen = [c.idempotency_key for c in vault.charges()]
    for entry in (e for e in recording.gate if e.kind == "entry"):
        claims = parse_pass_unchecked(entry.pass_text)
        secrets_seen += [entry.pass_text, claims.tok, claims.tok.split("/")[0], claims.nonce]
    for secret in secrets_seen:
        assert secret not in caplog.text  # ...without a pass, a token, a nonce or a key


def test_an_appliance_stopped_mid_day_and_started_again_charges_nothing_twice(
    day: tuple[Recording, ReplayResult], vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    recording, expected = day
    first_stop = StopAfter(2)
    first = Appliance(recording.config, RecordingSource(recording, speed=20.0), vault=vault, gateway=gateway,
                      clock=sandbox.clock, retention=False, observer=first_stop)  # fmt: skip
    first.start()
    try:
        assert first_stop.reached.wait(60)
    finally:
        first.stop()
    assert vault.open_visits(), "the stop should come while shoppers are still inside"
    lines_before = {v.id: len(vault.cart_lines(v.id)) for v in vault.open_visits()}
    opened_before = len(vault.open_visits()) + len(vault.charges())
    again = Appliance(recording.config, RecordingSource(recording), vault=vault, gateway=gateway, clock=sandbox.clock,
                      retention=False)  # fmt: skip
    assert again.run(60.0)
    assert again.recorder is not None and again.recorder.recognised == opened_before
    check_day(vault, sandbox, recording, expected)
    assert any(lines_before.values())  # some lines were stored before the stop and were not stored again


def test_a_unit_put_back_after_its_shopper_left_is_refunded_once_the_charge_is_paid(
    day: tuple[Recording, ReplayResult], vault: Vault
) -> None:
    from appliance.app.recorder import FloorRecorder
    from appliance.fusion.carts import Cart, receipt_for
    from appliance.gate.visits import Visit as FloorVisit

    recording, _ = day
    products = {p.sku: p for p in recording.config.products}
    currency = recording.config.store.currency
    sku = next(p.sku for p in recording.config.products if not p.by_weight)
    refunds: list[tuple[str, str, int]] = []
    recorder = FloorRecorder(vault, products, currency, refund_line=lambda *args: refunds.append(args))
    evidence = Evidence(5.0, ("s1",), -100.0, 0.99, 0.99)

    def shop(nonce: str, units: int) -> Charge:
        claims = PassClaims(iss="test", tok="tok_visa", iat=0, exp=10_000, nonce=nonce)
        recorder.visit_opened(FloorVisit(nonce, 1.0, 1, claims))
        cart = Cart(nonce)
        change = CartChange(nonce, sku, units, 0.0, evidence)
        cart.apply(change)
        recorder.cart_changed(change)
        charge = recorder.visit_left(receipt_for(cart, products, currency, 1.0, 9.0))
        assert charge is not None and charge.state == "pending"
        return charge

    paid, declined = shop("n-paid", 2), shop("n-declined", 1)
    recorder.credited_after_exit(CartChange("n-paid", sku, -1, 0.0, evidence))
    recorder.credited_after_exit(CartChange("n-declined", sku, -1, 0.0, evidence))
    assert refunds == [] and len(recorder.returns) == 2  # nothing is refunded before it is paid
    vault.set_charge_state(paid.order_ref, "succeeded", processor_ref="pi_1")
    vault.set_charge_state(declined.order_ref, "declined", error_code="card_declined")
    assert recorder.settle_returns() == 1
    assert refunds == [(paid.order_ref, sku, 1)] and recorder.returns == []
    assert recorder.settle_returns() == 0 and len(refunds) == 1  # once


@pytest.mark.parametrize("stop_s", [14.0, 20.0])  # stopped before the unit came back, or after
@pytest.mark.parametrize(("taken_g", "left"), [(-515.0, []), (-1030.0, [(("cider", 1),)])])
def test_units_put_back_while_in_review_withdraw_or_amend_the_stored_item_across_a_restart(
    tmp_path: Path, stop_s: float, taken_g: float, left: list[tuple[tuple[str, int], ...]]
) -> None:
    """Regression: the vault kept a take's review item open after its units were back on the shelf,
    for a person on the owner page to accept and charge."""
    from shopkit import T0, Script, side_by_side

    from appliance.app.recorder import FloorRecorder
    from appliance.vault import ManualClock

    nonces = ("JJJJJJJJJJJJJJJJJJJJJJ", "KKKKKKKKKKKKKKKKKKKKKK")
    s = Script.shop()
    side_by_side(s, nonces, 1.25)
    s.change("g1.s1.p3", T0 + 12, taken_g)
    s.change("g1.s1.p3", T0 + 16, +515.0)
    key, clock = secrets.token_bytes(32), ManualClock(T0)
    products = {p.sku: p for p in s.config.products}

    def box() -> tuple[Vault, FloorRecorder]:
        vault = Vault.open(tmp_path / "vault", key, RetentionPolicy.load(), clock)
        return vault, FloorRecorder(vault, products, "KRW")

    vault, recorder = box()
    s.run(T0, T0 + stop_s, listener=recorder)  # the box stops with both shoppers inside
    assert len(vault.open_review_items()) == (1 if stop_s < 16 else len(left))
    vault.close()
    vault, recorder = box()  # started again, it plays its input again from the start
    s.run(T0, T0 + 35, listener=recorder)
    assert recorder.recognised == 2
    ids = {}
    for receipt in s.receipts:
        ids[receipt.visit] = recorder.visit_id(receipt.visit)
        assert recorder.visit_left(receipt) is not None
    stored = sorted((i.visit, i.reason, i.candidates) for i in vault.open_review_items())
    assert stored == sorted((ids[r.visit], review_code(item.reason), item.candidates)
                            for r in s.receipts for item in r.review)
    assert [i.candidates for i in vault.open_review_items()] == left
    assert sum(len(vault.review_item_ids(v)) for v in ids.values()) == 1  # stored once, not again after the restart
    changed = Counter(e.kind for e in vault.audit_log.entries(kinds=["review.withdrawn", "review.amended"]))
    assert changed == Counter({"review.amended" if left else "review.withdrawn": 1})
    assert vault.verify_audit().ok
    vault.close()


def test_units_back_for_a_review_item_a_person_already_decided_leave_the_decision_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from appliance.app.recorder import FloorRecorder
    from appliance.events import ReviewItem
    from appliance.gate.visits import Visit as FloorVisit
    from appliance.vault import ManualClock

    with Vault.open(tmp_path / "vault", secrets.token_bytes(32), RetentionPolicy.load(), ManualClock(1.7e9)) as vault:
        recorder = FloorRecorder(vault, {}, "KRW")
        nonce = "RRRRRRRRRRRRRRRRRRRRRR"
        recorder.visit_opened(FloorVisit(nonce, 1.0, 1, PassClaims(iss="t", tok="tok_visa", iat=0, exp=10_000,
                                                                   nonce=nonce)))
        item = ReviewItem(nonce, "who took it?", (("cola", 1),), Evidence(5.0, ("s1",), -521.0, 0.99, 0.4))
        recorder.held_for_review(item)
        (stored,) = vault.open_review_items()
        vault.resolve_review_item(stored.id, accepted=True, sku="cola", qty=1)
        with caplog.at_level(logging.INFO):
            recorder.review_amended(item, None)
            recorder.review_amended(dataclasses.replace(item), None)  # equal, but not an item it was given
        assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]
        assert "already accepted" in caplog.records[0].getMessage()
        assert vault.open_review_items() == [] and vault.review_item_ids(recorder.visit_id(nonce) or "") == [stored.id]


def test_review_reasons_become_short_codes() -> None:
    assert review_code("which product?") == "which_product"
    assert review_code("who took it?") == "who_took_it"
    assert review_code("weight change matches no product here") == "weight_change_matches_no_product_here"
    assert review_code("???") == "uncertain"
    assert len(review_code("x " * 60)) <= 40


# --- live: gates and shelves over MQTT ----------------------------------------------------------------


class GateDevice:
    """A gate controller on the real broker, as its own MQTT user."""

    def __init__(self, port: int, user: str, password: str, shop: str) -> None:
        self.opened: list[dict[str, Any]] = []
        self.prefix = f"shop/{shop}/gate/{user}/"
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(user, password)
        self.client.on_message = lambda c, u, m: self.opened.append(json.loads(m.payload))
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(self.prefix + "cmd/open", qos=1)
        self.client.loop_start()
        assert subscribed.wait(5)
        self.seq = 0

    def send(self, leaf: str, body: dict[str, Any]) -> None:
        self.seq += 1
        payload = {"ts": int(time.time() * 1000), "seq": self.seq, **body}
        self.client.publish(self.prefix + leaf, json.dumps(payload).encode(), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_live_a_scanned_pass_opens_a_visit_and_a_restart_charges_what_was_stored_and_refuses_the_pass_again(
    make_broker: Any, tmp_path: Path, sandbox: SandboxProcessor, gateway: StripeGateway
) -> None:
    from appliance.sim.shop import ISSUER, default_shop, issuer_key

    broker = make_broker({"gate1": "gate"}, shop="corner")
    raw = default_shop(1).config_raw
    config = parse_config({**raw, "store": {**raw["store"], "id": "corner"}})
    config = dataclasses.replace(config, mqtt=MqttSettings(port=broker.port))
    product = config.products[0]
    now = int(time.time())
    text = issue_pass(issuer_key(1), {"iss": ISSUER, "tok": "cus_live/pm_card_visa", "iat": now - 5, "exp": now + 300,
                                      "nonce": "bGl2ZS1wYXNzLW5vbmNlLTE", "party": 1})  # fmt: skip
    device = GateDevice(broker.port, "gate1", broker.config.devices["gate1"][1], "corner")
    with Vault.open(tmp_path / "vault", secrets.token_bytes(32), RetentionPolicy.load(), SystemClock()) as vault:

        def an_appliance() -> tuple[Appliance, LiveSource]:
            cache = RestartSafeReplayCache(VaultAdmissions(lambda: vault))
            source = LiveSource(config, password=broker.config.appliance_password, cache=cache, clock=WallClock())
            return Appliance(config, source, vault=vault, gateway=gateway, clock=sandbox.clock,
                             retention=False), source  # fmt: skip

        app, source = an_appliance()
        app.start()
        try:
            assert source.ready.wait(10)
            device.send("scan", {"text": text})
            wait_until(lambda: bool(device.opened))
            assert device.opened[0]["people"] == 1
            assert len(vault.open_visits()) == 1  # stored before the gate was told to open
            visit = vault.open_visits()[0].id
            grams = -float(product.unit_g or 100.0)
            evidence = Evidence(float(now), (config.sensors[0].id,), grams, 0.95, 0.9, "taken")
            vault.add_cart_line(visit, CartChange(visit, product.sku, 2, 0.0, evidence))  # stored before the "crash"
        finally:
            app.stop()
        assert vault.charge_for_visit(visit) is None

        app, source = an_appliance()
        app.start()
        try:
            assert source.ready.wait(10)
            charge = vault.charge_for_visit(visit)
            assert charge is not None and charge.amount == 2 * product.price
            wait_until(lambda: vault.charge(charge.order_ref).state == "succeeded")  # type: ignore[union-attr]
            device.send("scan", {"text": text})  # the same pass again, after the restart
            wait_until(lambda: source.keeper.counters.snapshot()["replayed"] == 1)
            assert len(device.opened) == 1 and vault.open_visits() == []
        finally:
            app.stop()
            device.close()
        assert sandbox.ledger.summary()["per_order_ref"] == {charge.order_ref: 1}


def test_a_gate_whose_visit_cannot_be_stored_stays_shut() -> None:
    from appliance.gate.clock import ManualClock
    from appliance.gate.passes import ReplayCache
    from appliance.sim.shop import ISSUER, default_shop, issuer_key
    from appliance.vault import VaultError

    config = parse_config(default_shop(1).config_raw)
    clock = ManualClock(1_750_000_000.0)
    source = LiveSource(config, password="unused", cache=ReplayCache(), clock=clock)

    def broken_vault(claims: object, entered_at: float) -> str:
        raise VaultError("disk full")

    source.attach(broken_vault)
    text = issue_pass(issuer_key(1), {"iss": ISSUER, "tok": "cus_a/pm_b", "iat": 1_750_000_000 - 5,
                                      "exp": 1_750_000_300, "nonce": "c2h1dC1nYXRlLW5vbmNlLTE"})  # fmt: skip
    with pytest.raises(VaultError):
        source.keeper.present("gate1", text)  # no open command comes back: the link sends none
    stored: list[str] = []

    def working_vault(claims: PassClaims, entered_at: float) -> str:
        stored.append(claims.nonce)
        return "v1"

    source.attach(working_vault)
    other = issue_pass(issuer_key(1), {"iss": ISSUER, "tok": "cus_a/pm_b", "iat": 1_750_000_000 - 5,
                                       "exp": 1_750_000_300, "nonce": "c2h1dC1nYXRlLW5vbmNlLTI"})  # fmt: skip
    assert source.keeper.present("gate1", other) is not None and stored == ["c2h1dC1nYXRlLW5vbmNlLTI"]


class FeedLog:
    """A `Feed` that writes down what a live source hands the core loop, in order: gate events by
    time, sample blocks by their times and grams, ticks by time. A live source has no tracks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[float, ...]]] = []

    def gate(self, event: GateEvent) -> None:
        self.calls.append(("gate", (event.t,)))

    def track(self, point: object) -> None:
        raise AssertionError("the live source has no tracks")

    def samples(self, block: Any) -> None:
        self.calls.append(("samples", tuple(block.t.tolist()) + tuple(block.grams.tolist())))

    def advance(self, now: float) -> None:
        self.calls.append(("advance", (now,)))

    def finish(self, end: float) -> None:
        raise AssertionError("not finished")

    @property
    def ticks(self) -> list[float]:
        return [values[0] for kind, values in self.calls if kind == "advance"]


def test_live_readings_are_cut_at_the_same_ticks_whenever_the_live_loop_wakes() -> None:
    """The step detector's events depend on where readings are cut into blocks, so the live shop
    must cut them where a replay would (whole multiples of TICK_S), not wherever its thread wakes."""
    from appliance.gate.clock import ManualClock
    from appliance.gate.passes import ReplayCache
    from appliance.replay import TICK_S
    from appliance.sim.shop import ISSUER, default_shop, issuer_key

    config = parse_config(default_shop(1).config_raw)
    plates = [s.id for s in config.sensors[:3]]
    t0_ms = 1_750_000_000_037
    payloads: list[tuple[float, str, bytes]] = []  # (last reading's time, plate, payload)
    for plate, size in zip(plates, (7, 12, 5), strict=True):
        for seq, first in enumerate(range(0, 60 * 4, size)):
            ts = t0_ms + round(first * 1000 / 60)
            grams = [1000.0 + 0.5 * ((first + i) % 3) for i in range(size)]
            payloads.append((ts / 1000 + (size - 1) / 60, plate, json.dumps(
                {"ts": ts, "seq": seq, "hz": 60, "g": grams}).encode()))
    payloads.sort(key=lambda p: p[0])  # as they arrive
    text = issue_pass(issuer_key(1), {"iss": ISSUER, "tok": "cus_a/pm_b", "iat": t0_ms // 1000 - 5,
                                      "exp": t0_ms // 1000 + 300, "nonce": "bGl2ZS10aWNrcy1ub25jZS0x"})  # fmt: skip

    def fed(wakes: list[float]) -> FeedLog:
        clock = ManualClock(t0_ms / 1000)
        source = LiveSource(config, password="unused", cache=ReplayCache(), clock=clock, lag_s=0.5)
        source.attach(lambda claims, entered_at: "v1")
        log = FeedLog()
        sent, presented = 0, False
        for wake in wakes:
            if wake >= 1.3 and not presented:  # a pass scanned at 1.3 s, whenever the loop wakes
                clock.set(t0_ms / 1000 + 1.3)
                assert source.keeper.present("gate1", text) is not None
                presented = True
            clock.set(t0_ms / 1000 + wake)
            while sent < len(payloads) and payloads[sent][0] < clock.now():
                _, plate, body = payloads[sent]
                assert source.ingest.weight(plate, body)
                sent += 1
            source.catch_up(log, clock.now() - 0.5)
        return log

    steady = fed([0.13] + [0.25 * k for k in range(1, 19)])
    irregular = fed([0.13, 0.61, 0.62, 1.9, 2.05, 3.3, 4.5])
    assert steady.calls == irregular.calls
    ticks = steady.ticks
    assert ticks == [ticks[0] + TICK_S * k for k in range(len(ticks))] and ticks[0] % TICK_S == 0
    last = -math.inf
    for kind, values in steady.calls:
        if kind == "advance":
            last = values[0]
        elif kind == "samples":
            times = values[: len(values) // 2]
            assert last <= min(times) and max(times) < last + TICK_S


def test_the_live_source_skips_ahead_when_the_clock_jumps_instead_of_ticking_through_the_gap(
        caplog: pytest.LogCaptureFixture) -> None:
    """At the first time sync after boot the clock may step a day ahead: the floor must not work
    through 345,600 quarter-second ticks before it sees the shop again."""
    from appliance.app.sources import CATCH_UP_MAX_S
    from appliance.gate.clock import ManualClock
    from appliance.gate.passes import ReplayCache
    from appliance.replay import TICK_S
    from appliance.sim.shop import default_shop

    config = parse_config(default_shop(1).config_raw)
    clock = ManualClock(1_750_000_000.1)
    source = LiveSource(config, password="unused", cache=ReplayCache(), clock=clock)
    fed = FeedLog()
    source.catch_up(fed, clock.now())
    clock.advance(2.0)
    source.catch_up(fed, clock.now())
    assert len(fed.ticks) == 1 + 8
    clock.advance(86_400.0)
    with caplog.at_level(logging.WARNING, logger="appliance.app.sources"):
        source.catch_up(fed, clock.now())
    ticks = fed.ticks
    assert len(ticks) == 9 + round(CATCH_UP_MAX_S / TICK_S)
    assert ticks[-1] <= clock.now() < ticks[-1] + TICK_S and all(t % TICK_S == 0 for t in ticks)
    assert "clock moved 86400 s ahead" in caplog.text
