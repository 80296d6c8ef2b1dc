"""The scanner-less gate: entry passes read from camera frames with OpenCV's QR detector, in memory only."""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.events import GateEvent
from appliance.gate.admission import GateKeeper
from appliance.gate.clock import ManualClock
from appliance.gate.passes import b64url_encode, issue_pass, public_key_b64
from appliance.gate.qr import CameraGate, QrReader, synthetic_view

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ISSUERS = {"demo-pay": public_key_b64(KEY)}
T0 = 1700000000
PASS = issue_pass(
    KEY,
    {
        "iss": "demo-pay",
        "tok": "cus_demo/pm_card_visa",
        "iat": T0,
        "exp": T0 + 300,
        "nonce": "QRQRQRQRQRQRQRQRQRQRQR",
        "party": 2,
        "rk": b64url_encode(bytes(range(32))),
        "ch": b64url_encode(bytes(range(32, 64))),
    },
)


def camera_frame(text: str, *, angle: float, module_px: float, noise: float, seed: int) -> npt.NDArray[np.uint8]:
    return synthetic_view(text, angle=angle, module_px=module_px, noise=noise, rng=np.random.default_rng(seed))


VIEWS = [
    (0.0, 4.0, 0.0),
    (17.0, 4.0, 8.0),
    (45.0, 5.0, 10.0),
    (90.0, 4.5, 5.0),
    (133.0, 5.0, 12.0),
    (200.0, 3.5, 5.0),
    (300.0, 5.0, 15.0),
    (-8.0, 4.5, 20.0),
]


@pytest.mark.parametrize(
    ("angle", "module_px", "noise"), VIEWS, ids=[f"{a:g}deg-{m:g}px-noise{n:g}" for a, m, n in VIEWS]
)
def test_a_pass_is_read_from_a_rotated_scaled_noisy_frame(angle: float, module_px: float, noise: float) -> None:
    frame = camera_frame(PASS, angle=angle, module_px=module_px, noise=noise, seed=int(abs(angle) * 10 + module_px))
    assert QrReader().read(frame) == PASS


def test_a_colour_frame_is_read_too() -> None:
    grey = camera_frame(PASS, angle=30.0, module_px=5.0, noise=6.0, seed=3)
    assert QrReader().read(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)) == PASS


@pytest.mark.parametrize(
    "frame",
    [
        np.full((480, 640), 128, np.uint8),
        np.random.default_rng(7).integers(0, 256, (480, 640), dtype=np.uint8),
        np.zeros((1, 1), np.uint8),
    ],
    ids=["blank", "noise", "one pixel"],
)
def test_a_frame_without_a_code_reads_nothing(frame: npt.NDArray[np.uint8]) -> None:
    assert QrReader().read(frame) is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [(np.zeros((10, 10), np.float32), "uint8"), (np.zeros((10, 10, 4), np.uint8), "shape"), ([[0]], "uint8")],
)
def test_a_frame_of_the_wrong_kind_is_a_clear_error(frame: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QrReader().read(frame)


def test_the_camera_gate_admits_once_while_the_code_stays_in_view_and_never_writes_a_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a frame was about to be written")

    real_open = builtins.open

    def read_only_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            raise AssertionError(f"something opened {file} for writing")
        return real_open(file, mode, *args, **kwargs)

    for name in ("imwrite", "imencode", "VideoWriter"):
        monkeypatch.setattr(cv2, name, refuse)
    monkeypatch.setattr(np, "save", refuse)
    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.chdir(tmp_path)

    events: list[GateEvent] = []
    keeper = GateKeeper(ISSUERS, ManualClock(T0 + 5), events.append)
    gate = CameraGate("gate1", lambda g, text, t: keeper.present(g, text, t) is not None, hold_s=3.0)
    frames = [camera_frame(PASS, angle=5.0 * i, module_px=5.0, noise=6.0, seed=i) for i in range(3)]
    empty = np.full((720, 960), 190, np.uint8)
    results = [gate.offer(frames[0], T0 + 5.0), gate.offer(empty, T0 + 5.2), gate.offer(frames[1], T0 + 5.4)]
    assert results == [True, None, None]
    assert gate.offer(frames[2], T0 + 9.0) is False  # held long enough to be shown again: now a replay
    assert [e.kind for e in events] == ["entry"] and events[0].pass_text == PASS
    assert keeper.counters.snapshot()["replayed"] == 1
    assert os.listdir(tmp_path) == []
