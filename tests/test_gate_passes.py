"""Entry passes (shared/spec/entry-pass.md): the test vector, every rejection code, properties and a fuzzer."""

from __future__ import annotations

import base64
import json
import os
import string
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.events import GateEvent
from appliance.gate.admission import GateKeeper, OpenCommand
from appliance.gate.clock import ManualClock
from appliance.gate.passes import (
    CODES,
    MAX_LEN,
    PassError,
    ReplayCache,
    b64url_encode,
    issue_pass,
    public_key_b64,
    verify_pass,
)

ISSUER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ISSUERS = {"demo-pay": public_key_b64(ISSUER_KEY)}
VECTOR_PAYLOAD = {
    "iss": "demo-pay",
    "tok": "cus_demo/pm_card_visa",
    "iat": 1700000000,
    "exp": 1700000300,
    "nonce": "AAAAAAAAAAAAAAAAAAAAAA",
    "party": 1,
}
VECTOR_PASS = (
    "WO1.eyJpc3MiOiJkZW1vLXBheSIsInRvayI6ImN1c19kZW1vL3BtX2NhcmRfdmlzYSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAwMzAwLCJub25jZSI6IkFBQUFBQUFBQUFBQUFBQUFBQUFBQUEiLCJwYXJ0eSI6MX0"
    ".JuoX85R5h_KTrvDfSWBKDFxeW8wTtsRkYzK-LDvMe0LGMSmluovjG_Aj2sIE1MPab-14EjRmf7-Cb_5JnJO8Cg"
)
NOW = 1700000100.0
B64URL = string.ascii_letters + string.digits + "-_"


def signed(payload: Any, key: Ed25519PrivateKey = ISSUER_KEY) -> str:
    """A pass over any JSON-able payload (valid or not), signed by `key`."""
    if isinstance(payload, dict):
        return issue_pass(key, payload)
    return signed_raw(json.dumps(payload, separators=(",", ":")).encode(), key)


def signed_raw(body: bytes, key: Ed25519PrivateKey = ISSUER_KEY) -> str:
    """A pass over arbitrary payload bytes, signed by `key`."""
    head = f"WO1.{b64url_encode(body)}"
    return f"{head}.{b64url_encode(key.sign(head.encode()))}"


def with_fields(**changes: Any) -> dict[str, Any]:
    out = dict(VECTOR_PAYLOAD)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def code_of(text: Any, now: float = NOW, cache: ReplayCache | None = None) -> str:
    try:
        verify_pass(text, ISSUERS, now, cache if cache is not None else ReplayCache())
    except PassError as err:
        return err.code
    return "accepted"


# --- the test vector ---------------------------------------------------------------------------


def test_the_spec_test_vector_is_produced_and_accepted() -> None:
    assert public_key_b64(ISSUER_KEY) == "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"
    assert signed(VECTOR_PAYLOAD) == VECTOR_PASS
    claims = verify_pass(VECTOR_PASS, ISSUERS, NOW, ReplayCache())
    assert (claims.iss, claims.tok, claims.iat, claims.exp, claims.nonce, claims.party) == (
        "demo-pay",
        "cus_demo/pm_card_visa",
        1700000000,
        1700000300,
        "AAAAAAAAAAAAAAAAAAAAAA",
        1,
    )
    assert claims.rk is None and claims.ch is None


def test_every_single_character_change_of_the_test_vector_is_rejected() -> None:
    """Every position of payload and signature, replaced by every other base64url character or a dot."""
    start = len("WO1.")
    tried = 0
    for i in range(start, len(VECTOR_PASS)):
        if VECTOR_PASS[i] == ".":
            continue
        for c in B64URL + ".=+/ ":
            if c == VECTOR_PASS[i]:
                continue
            changed = VECTOR_PASS[:i] + c + VECTOR_PASS[i + 1 :]
            assert code_of(changed) in ("malformed", "unknown_issuer", "bad_signature"), (i, c)
            tried += 1
    assert tried == (len(VECTOR_PASS) - 5) * (len(B64URL) + 4)


def test_the_claims_repr_hides_the_token() -> None:
    claims = verify_pass(VECTOR_PASS, ISSUERS, NOW, ReplayCache())
    assert "cus_demo" not in repr(claims) and "pm_card" not in repr(claims)


# --- one row per rejection, with its code -------------------------------------------------------

_PAYLOAD_B64 = VECTOR_PASS.split(".")[1]
_SIG_B64 = VECTOR_PASS.split(".")[2]

REJECTIONS: list[tuple[str, Any, float, str]] = [
    ("not text", b"WO1.x.y", NOW, "malformed"),
    ("empty", "", NOW, "malformed"),
    ("wrong prefix", "WO2" + VECTOR_PASS[3:], NOW, "malformed"),
    ("lower-case prefix", "wo1" + VECTOR_PASS[3:], NOW, "malformed"),
    ("two parts", f"WO1.{_PAYLOAD_B64}", NOW, "malformed"),
    ("four parts", VECTOR_PASS + ".AA", NOW, "malformed"),
    ("padded payload", f"WO1.{_PAYLOAD_B64}=.{_SIG_B64}", NOW, "malformed"),
    ("standard base64 alphabet", VECTOR_PASS.replace("-", "+").replace("_", "/"), NOW, "malformed"),
    ("whitespace", VECTOR_PASS + "\n", NOW, "malformed"),
    ("truncated signature", VECTOR_PASS[:-4], NOW, "malformed"),
    ("over 1024 characters", VECTOR_PASS + "A" * (MAX_LEN - len(VECTOR_PASS) + 1), NOW, "malformed"),
    ("not JSON", signed_raw(b"hello"), NOW, "malformed"),
    ("not UTF-8", signed_raw(b'{"iss":"\xff"}'), NOW, "malformed"),
    ("a JSON array", signed([1, 2]), NOW, "malformed"),
    ("duplicate field", signed_raw(b'{"iss":"demo-pay","iss":"demo-pay"}'), NOW, "malformed"),
    ("missing tok", signed(with_fields(tok=...)), NOW, "malformed"),
    ("empty tok", signed(with_fields(tok="")), NOW, "malformed"),
    ("tok of 256 characters", signed(with_fields(tok="t" * 256)), NOW, "malformed"),
    ("tok a number", signed(with_fields(tok=5)), NOW, "malformed"),
    ("tok with a lone surrogate escape", signed_raw(json.dumps(with_fields(tok="cus_a\ud800/pm_b")).encode()), NOW,
     "malformed"),
    ("iss with a lone surrogate escape", signed_raw(json.dumps(with_fields(iss="demo\udfff")).encode()), NOW,
     "malformed"),
    ("missing iss", signed(with_fields(iss=...)), NOW, "malformed"),
    ("iat a string", signed(with_fields(iat="1700000000")), NOW, "malformed"),
    ("iat a float", signed(with_fields(iat=1700000000.0)), NOW, "malformed"),
    ("exp a boolean", signed(with_fields(exp=True)), NOW, "malformed"),
    ("exp before iat", signed(with_fields(exp=1699999999)), NOW, "malformed"),
    ("exp equal to iat", signed(with_fields(exp=1700000000)), NOW, "malformed"),
    ("lifetime over 600 s", signed(with_fields(exp=1700000601)), NOW, "malformed"),
    ("nonce of 15 characters", signed(with_fields(nonce="A" * 15)), NOW, "malformed"),
    ("nonce of 65 characters", signed(with_fields(nonce="A" * 65)), NOW, "malformed"),
    ("nonce with a plus", signed(with_fields(nonce="A" * 15 + "+")), NOW, "malformed"),
    ("party 0", signed(with_fields(party=0)), NOW, "malformed"),
    ("party 5", signed(with_fields(party=5)), NOW, "malformed"),
    ("party true", signed(with_fields(party=True)), NOW, "malformed"),
    ("party null", signed(with_fields(party=None)), NOW, "malformed"),
    ("rk of 31 bytes", signed(with_fields(rk=b64url_encode(bytes(31)))), NOW, "malformed"),
    ("rk padded", signed(with_fields(rk=b64url_encode(bytes(32)) + "=")), NOW, "malformed"),
    ("ch not a string", signed(with_fields(ch=[1])), NOW, "malformed"),
    ("unknown issuer", signed(with_fields(iss="someone")), NOW, "unknown_issuer"),
    ("signed by another key", signed(VECTOR_PAYLOAD, OTHER_KEY), NOW, "bad_signature"),
    ("signature of another pass", f"WO1.{_PAYLOAD_B64}.{signed(with_fields(party=2)).split('.')[2]}", NOW,
     "bad_signature"),
    ("all-zero signature", f"WO1.{_PAYLOAD_B64}.{b64url_encode(bytes(64))}", NOW, "bad_signature"),
    ("31 s before iat", VECTOR_PASS, 1700000000 - 31, "not_yet_valid"),
    ("at exp", VECTOR_PASS, 1700000300, "expired"),
    ("long after exp", VECTOR_PASS, 1800000000, "expired"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "now", "code"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_each_bad_pass_is_refused_with_its_code(what: str, text: Any, now: float, code: str) -> None:
    assert code_of(text, now) == code


@pytest.mark.parametrize(
    ("now", "expected"),
    [(1700000000 - 30, "accepted"), (1700000000 - 30.001, "not_yet_valid"), (1700000299.999, "accepted")],
)
def test_the_time_window_allows_thirty_seconds_of_skew_and_ends_at_exp(now: float, expected: str) -> None:
    assert code_of(VECTOR_PASS, now) == expected


def test_a_pass_used_twice_is_refused_as_replayed() -> None:
    cache = ReplayCache()
    assert code_of(VECTOR_PASS, NOW, cache) == "accepted"
    assert code_of(VECTOR_PASS, NOW + 10, cache) == "replayed"


def test_a_nonce_is_held_until_its_pass_expires_and_not_longer() -> None:
    """Policy entry_passes: the nonce is held in memory until the pass expires. Before, expired
    nonces stayed until a thousand more had been seen (days, in a quiet shop)."""
    cache = ReplayCache()
    assert cache.claim("first-nonce", exp=1000, now=900.0)
    assert cache.claim("second-nonce", exp=1100, now=1000.0)
    assert len(cache) == 2, "still valid at its expiry second"
    assert cache.claim("third-nonce", exp=1200, now=1001.0)
    assert len(cache) == 2
    assert not cache.claim("second-nonce", exp=1100, now=1050.0)


def test_a_refused_pass_does_not_use_up_its_nonce() -> None:
    """A pass refused as not yet valid (a skewed scanner clock) must still work a minute later."""
    cache = ReplayCache()
    assert code_of(VECTOR_PASS, 1700000000 - 60, cache) == "not_yet_valid"
    assert len(cache) == 0
    assert code_of(VECTOR_PASS, NOW, cache) == "accepted"


def test_every_code_in_the_spec_is_reachable() -> None:
    assert {row[3] for row in REJECTIONS} | {"replayed"} == set(CODES)


# --- properties -----------------------------------------------------------------------------------

_nonces = st.text(alphabet=B64URL, min_size=16, max_size=64)
_payloads = st.fixed_dictionaries(
    {
        "iss": st.just("demo-pay"),
        "tok": st.text(min_size=1, max_size=255).filter(lambda t: len(t) <= 255),
        "iat": st.integers(min_value=0, max_value=4_000_000_000),
        "lifetime": st.integers(min_value=1, max_value=600),
        "nonce": _nonces,
        "party": st.integers(min_value=1, max_value=4),
    },
    optional={"rk": st.binary(min_size=32, max_size=32), "ch": st.binary(min_size=32, max_size=32)},
)


def _valid(fields: dict[str, Any]) -> dict[str, Any]:
    payload = {k: v for k, v in fields.items() if k != "lifetime"}
    payload["exp"] = payload["iat"] + fields["lifetime"]
    for key in ("rk", "ch"):
        if key in payload:
            payload[key] = b64url_encode(payload[key])
    return payload


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(fields=_payloads, offset=st.floats(min_value=-30.0, max_value=1.0))
def test_any_valid_pass_is_accepted_with_its_claims_inside_its_window(fields: dict[str, Any], offset: float) -> None:
    payload = _valid(fields)
    text = signed(payload)
    if len(text) > MAX_LEN:
        assert code_of(text, payload["iat"]) == "malformed"
        return
    now = payload["iat"] + offset * (1.0 if offset < 0 else fields["lifetime"] * 0.999)
    claims = verify_pass(text, ISSUERS, now, ReplayCache())
    assert (claims.tok, claims.nonce, claims.party, claims.iat, claims.exp) == (
        payload["tok"],
        payload["nonce"],
        payload["party"],
        payload["iat"],
        payload["exp"],
    )
    assert claims.rk == fields.get("rk") and claims.ch == fields.get("ch")


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(fields=_payloads, now=st.floats(min_value=-1e10, max_value=1e10, allow_nan=False))
def test_outside_its_window_a_valid_pass_is_never_accepted(fields: dict[str, Any], now: float) -> None:
    payload = _valid(fields)
    text = signed(payload)
    code = code_of(text, now)
    if len(text) > MAX_LEN:
        assert code == "malformed"
    elif now < payload["iat"] - 30:
        assert code == "not_yet_valid"
    elif now >= payload["exp"]:
        assert code == "expired"
    else:
        assert code == "accepted"


# --- the fuzzer -----------------------------------------------------------------------------------


def _string_mutation(text: str, data: st.DataObject) -> str:
    """A change to the pass text itself, without re-signing."""
    kind = data.draw(
        st.sampled_from(
            ["flip", "delete", "insert", "truncate", "swap_parts", "random_signature", "other_key", "case", "append",
             "standard_alphabet", "pad", "duplicate_part", "unicode"]
        ),
        label="string mutation",
    )  # fmt: skip
    parts = text.split(".")
    if kind == "flip":
        i = data.draw(st.integers(0, len(text) - 1))
        c = data.draw(st.characters(codec="utf-8"))
        return text[:i] + c + text[i + 1 :]
    if kind == "delete":
        i = data.draw(st.integers(0, len(text) - 1))
        return text[:i] + text[i + 1 :]
    if kind == "insert":
        i = data.draw(st.integers(0, len(text)))
        return text[:i] + data.draw(st.text(min_size=1, max_size=3)) + text[i:]
    if kind == "truncate":
        return text[: data.draw(st.integers(0, len(text) - 1))]
    if kind == "swap_parts":
        return ".".join([parts[0], parts[2], parts[1]])
    if kind == "random_signature":
        return ".".join([parts[0], parts[1], b64url_encode(data.draw(st.binary(min_size=64, max_size=64)))])
    if kind == "other_key":
        head = f"{parts[0]}.{parts[1]}"
        return f"{head}.{b64url_encode(OTHER_KEY.sign(head.encode()))}"
    if kind == "case":
        return text.swapcase()
    if kind == "append":
        return text + data.draw(st.sampled_from(["=", "==", " ", "\n", "\x00", ".", "A"]))
    if kind == "standard_alphabet":
        standard = base64.b64encode(base64.urlsafe_b64decode(parts[1] + "==")).decode()
        return f"{parts[0]}.{standard}.{parts[2]}"
    if kind == "pad":
        return ".".join([parts[0], parts[1] + "=" * (-len(parts[1]) % 4 or 4), parts[2]])
    if kind == "duplicate_part":
        return ".".join([parts[0], parts[1], parts[1]])
    return text.replace("A", "\u0410", 1)  # a Cyrillic A that looks the same


_BAD_FIELD_VALUES: dict[str, list[Any]] = {
    "iss": [None, 1, "", ["demo-pay"], {"id": "demo-pay"}, "demo-pay\udc00"],
    "tok": [None, 0, "", "x" * 256, ["t"], True, "cus_\ud800/pm_x"],
    "iat": [None, "1", 1.5, True, float("inf"), 10**30],
    "exp": [None, "1", 2.5, False, -1],
    "nonce": [None, "", "short", "x" * 65, "A" * 20 + "!", 12345678901234567890],
    "party": [0, 5, -1, 2.0, "2", True, None, 10**20],
    "rk": ["", "AA", b64url_encode(bytes(33)), 1, b64url_encode(bytes(32)) + "="],
    "ch": ["", b64url_encode(bytes(16)), None, {}],
}


def _signed_mutation(fields: dict[str, Any], data: st.DataObject) -> tuple[str, str]:
    """A payload broken in one known way but properly signed by the issuer: (text, expected code)."""
    payload = _valid(fields)
    kind = data.draw(
        st.sampled_from(["bad_field", "missing_field", "duplicate_key", "lifetime", "not_object", "bytes",
                         "oversized", "expired", "not_yet_valid", "unknown_issuer", "nested"]),
        label="signed mutation",
    )  # fmt: skip
    if kind == "bad_field":
        key = data.draw(st.sampled_from(sorted(_BAD_FIELD_VALUES)))
        payload[key] = data.draw(st.sampled_from(_BAD_FIELD_VALUES[key]))
        if key == "iss" and isinstance(payload[key], str) and payload[key].isascii() and payload[key]:
            return signed(payload), "unknown_issuer"
        if key == "exp" and isinstance(payload["exp"], int) and not isinstance(payload["exp"], bool):
            return signed(payload), "malformed"
        return signed_raw(json.dumps(payload, allow_nan=True).encode()), "malformed"
    if kind == "missing_field":
        del payload[data.draw(st.sampled_from(["iss", "tok", "iat", "exp", "nonce"]))]
        return signed(payload), "malformed"
    if kind == "duplicate_key":
        key = data.draw(st.sampled_from(sorted(payload)))
        body = json.dumps(payload)[:-1] + f", {json.dumps(key)}: {json.dumps(payload[key])}}}"
        return signed_raw(body.encode()), "malformed"
    if kind == "lifetime":
        payload["exp"] = payload["iat"] + data.draw(st.sampled_from([601, 3600, 0, -5]))
        return signed(payload), "malformed"
    if kind == "not_object":
        return signed(data.draw(st.sampled_from([[payload], "pass", 7, None]))), "malformed"
    if kind == "bytes":
        return signed_raw(data.draw(st.binary(max_size=200))), "malformed"
    if kind == "oversized":
        payload["pad"] = "x" * (MAX_LEN + 10)
        return signed(payload), "malformed"
    if kind == "nested":
        return signed_raw(b"[" * 5000 + b"]" * 5000), "malformed"
    if kind == "unknown_issuer":
        payload["iss"] = "not-configured"
        return signed(payload), "unknown_issuer"
    return signed(payload), kind


@pytest.fixture
def empty_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


@settings(
    max_examples=700,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fields=_payloads, data=st.data())
def test_fuzzed_passes_raise_only_pass_errors_and_a_refusal_leaves_only_a_count(
    fields: dict[str, Any], data: st.DataObject, empty_folder: Path
) -> None:
    """Mutations of valid passes: string-level (never re-signed) and signed payloads broken on purpose."""
    payload = _valid(fields)
    original = signed(payload)
    if data.draw(st.booleans(), label="string-level"):
        text, expected = _string_mutation(original, data), "refused"
        if text == original:
            expected = "accepted" if len(original) <= MAX_LEN else "malformed"
        elif len(original) > MAX_LEN:
            expected = "malformed"
    else:
        text, expected = _signed_mutation(fields, data)
        if len(text) > MAX_LEN:
            expected = "malformed"

    events: list[GateEvent] = []
    now = payload["iat"] + fields["lifetime"] / 2
    if expected == "expired":
        now = payload["exp"] + data.draw(st.floats(min_value=0.0, max_value=1e6))
    elif expected == "not_yet_valid":
        now = payload["iat"] - 30.0 - data.draw(st.floats(min_value=0.001, max_value=1e6))
    keeper = GateKeeper(ISSUERS, ManualClock(now), events.append)
    cwd = os.getcwd()
    os.chdir(empty_folder)
    try:
        try:
            verify_pass(text, ISSUERS, now, ReplayCache())
            outcome = "accepted"
        except PassError as err:  # any other exception fails the test
            outcome = err.code
        command = keeper.present("g1", text)
    finally:
        os.chdir(cwd)

    if expected == "refused":
        assert outcome != "accepted"
    else:
        assert outcome == expected
    if outcome == "accepted":
        assert isinstance(command, OpenCommand) and command.people == payload["party"]
        assert [e.pass_text for e in events] == [text] and keeper.counters.total == 0
        assert keeper.present("g1", text) is None and keeper.counters.snapshot()["replayed"] == 1
        assert len(events) == 1
    else:
        assert command is None and events == []
        assert keeper.counters.snapshot() == {c: int(c == outcome) for c in CODES}
        assert keeper.present("g1", text) is None and keeper.counters.total == 2
    assert list(empty_folder.iterdir()) == []


def test_a_signed_token_with_a_lone_surrogate_is_refused_before_it_can_crash_storage_or_charging() -> None:
    """Regression: `"tok": "\\ud800..."` was accepted, and the token then failed to encode in the vault/HTTP."""
    text = signed_raw(json.dumps(with_fields(tok="cus_a\ud800/pm_b")).encode())
    with pytest.raises(PassError) as caught:
        verify_pass(text, ISSUERS, NOW, ReplayCache())
    assert caught.value.code == "malformed"
