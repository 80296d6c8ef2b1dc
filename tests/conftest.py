"""Shared fixtures: the team's read-only data in ../shared, located once and checked loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under ../shared; fails the test (never skips) with a clear message when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"needed test data is missing: {path}. The tests read the team's shared data from ../shared "
            "beside the repository (CI puts it there); check it out beside this clone.",
            pytrace=False,
        )
    return path


@pytest.fixture
def shared() -> Path:
    return shared_path()


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real Mosquitto on a free loopback port with the box's ACL; yields the running Broker.

    Register devices on `broker.config` before use only through `make_broker` below when a test
    needs device users; this one has just the appliance user.
    """
    from appliance.broker import Broker, BrokerConfig

    b = Broker(BrokerConfig(tmp_path / "broker", shop="test"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def make_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A factory: make_broker({"shelf1": "shelf"}) starts a broker with those device users."""
    from appliance.broker import Broker, BrokerConfig

    started: list[Broker] = []

    def make(devices: dict[str, str], shop: str = "test") -> Broker:
        cfg = BrokerConfig(tmp_path / f"broker{len(started)}", shop=shop)
        for user, kind in devices.items():
            cfg.add_device(user, kind)
        b = Broker(cfg)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def sandbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The sandbox payment processor on loopback, its state in a temporary file, on a hand-moved clock.

    Yields the running SandboxProcessor: `.url` for StripeGateway, `.clock.advance(s)` to move its
    time, `.inject(Fault(...))` for faults, `.ledger.summary()` to count what it holds.
    """
    from appliance.gate.clock import ManualClock
    from appliance.payments.sandbox_server import SandboxProcessor

    with SandboxProcessor(tmp_path / "processor.db", clock=ManualClock(1_750_000_000.0)) as processor:
        yield processor


@pytest.fixture(scope="session")
def person_detector():  # type: ignore[no-untyped-def]
    """The real YOLOX-nano detector at 640x384 (installed by install/models.sh; fails clearly if missing)."""
    from appliance.config.model import VisionSettings
    from appliance.vision.detector import OnnxDetector
    from appliance.vision.models import ModelError

    try:
        return OnnxDetector.from_settings(VisionSettings())
    except ModelError as err:
        pytest.fail(f"{err} (the tests need the real model)", pytrace=False)


@pytest.fixture(scope="session")
def rendered_shop(tmp_path_factory, person_detector):  # type: ignore[no-untyped-def]
    """A small simulated recording filmed by two ceiling cameras: 2 shoppers, 4 fps, about 18 s.

    Yields (recording folder, people paths, RenderStats). Rendered once per test session.
    """
    from appliance.sim.cameras import example_recording, example_walks, pedestrians, render

    folder = tmp_path_factory.mktemp("shop")
    config, cameras = example_recording(folder)
    t0 = 1_700_000_000.0
    walks = example_walks(config, people=2, start=t0 + 2.0, seed=5, pause_s=2.0, gap_s=3.0)
    walkers = pedestrians(shared_path("data", "pets09-s2l1", "vtest.avi"), person_detector, frames=160)
    stats = render(folder, cameras, walks, fps=4.0, seed=5, detector=person_detector, walkers=walkers,
                   start=t0, end=max(float(w.t[-1]) for w in walks) + 1.0)
    return folder, walks, stats
