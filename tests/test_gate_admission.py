"""Admission at the gate: accepted passes open the gate for the party; passages become entries and exits."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.events import GateEvent
from appliance.gate.admission import GateKeeper, OpenCommand, RejectionCounters
from appliance.gate.clock import ManualClock
from appliance.gate.passes import CODES, issue_pass, public_key_b64

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ISSUERS = {"demo-pay": public_key_b64(KEY)}
T0 = 1700000000


def a_pass(nonce: str = "N" * 22, party: int = 1) -> str:
    return issue_pass(
        KEY, {"iss": "demo-pay", "tok": "cus_a/pm_b", "iat": T0, "exp": T0 + 300, "nonce": nonce, "party": party}
    )


@pytest.fixture
def gate() -> tuple[GateKeeper, list[GateEvent], ManualClock]:
    events: list[GateEvent] = []
    clock = ManualClock(T0 + 10)
    return GateKeeper(ISSUERS, clock, events.append, open_for_s=5.0), events, clock


def test_an_accepted_pass_opens_the_gate_for_its_party_and_emits_one_entry(gate) -> None:  # type: ignore[no-untyped-def]
    keeper, events, _clock = gate
    command = keeper.present("g1", a_pass(party=3), t=T0 + 9.5)
    assert command == OpenCommand("g1", 3, (T0 + 15) * 1000)
    assert command.as_json() == {"people": 3, "until": (T0 + 15) * 1000}
    assert events == [GateEvent(t=T0 + 9.5, kind="entry", pass_text=a_pass(party=3))]


def test_a_refused_pass_opens_nothing_and_emits_nothing(gate) -> None:  # type: ignore[no-untyped-def]
    keeper, events, _clock = gate
    assert keeper.present("g1", "WO1.not.apass") is None
    assert keeper.present("g1", a_pass()) is not None
    assert keeper.present("g1", a_pass()) is None
    assert len(events) == 1
    assert keeper.counters.snapshot() == {c: int(c in ("malformed", "replayed")) for c in CODES}


def test_leaving_emits_an_exit_at_the_gates_time(gate) -> None:  # type: ignore[no-untyped-def]
    keeper, events, _clock = gate
    keeper.passage("g1", "out", T0 + 123.4)
    assert events == [GateEvent(t=T0 + 123.4, kind="exit")]


def test_people_coming_in_beyond_the_party_or_after_the_window_are_counted(gate) -> None:  # type: ignore[no-untyped-def]
    keeper, _events, clock = gate
    keeper.present("g1", a_pass(party=2))
    keeper.passage("g1", "in", T0 + 11)
    keeper.passage("g1", "in", T0 + 11.5)
    keeper.passage("g1", "in", T0 + 12)  # a third person on a pass for two
    keeper.present("g1", a_pass(nonce="M" * 22))
    clock.advance(6)  # the gate closed again before anyone came through
    keeper.passage("g1", "in", T0 + 17)
    assert keeper.passages() == {"in": 4, "out": 0, "unexpected_in": 2}


def test_the_box_card_issuer_cannot_replace_a_configured_issuer(gate) -> None:  # type: ignore[no-untyped-def]
    keeper, _events, _clock = gate
    with pytest.raises(ValueError, match="already configured"):
        keeper.add_issuer("demo-pay", bytes(32))


def test_rejection_counters_know_only_the_spec_codes() -> None:
    counters = RejectionCounters()
    counters.count("expired")
    with pytest.raises(ValueError, match="unknown rejection code"):
        counters.count("sneaky")
    assert counters.total == 1


@pytest.mark.parametrize("people", [0, 5])
def test_an_open_command_is_for_one_to_four_people(people: int) -> None:
    with pytest.raises(ValueError, match="people must be 1-4"):
        OpenCommand("g1", people, 0)
