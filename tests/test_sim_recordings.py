"""Every simulated scenario is a valid recording: the independent checker and our reader both accept it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from appliance.sim import SCENARIOS, STANDARD_SUITE, generate, simulate, write_recording
from appliance.sim.recording import read_recording

SEED = 11


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The standard suite, with the rush and the day shortened to 5 minutes, written once for this module."""
    root = tmp_path_factory.mktemp("suite")
    short = {"rush": {"duration_s": 300.0, "shoppers": 6}}
    out = {name: generate(name, SEED, root / name, **short.get(name, {})) for name in STANDARD_SUITE}
    out["day"] = generate("day", SEED, root / "day", duration_s=300.0, shoppers=3, progress=False)
    return out


def test_the_suite_covers_every_scenario_but_the_hour_long_day() -> None:
    assert set(STANDARD_SUITE) == set(SCENARIOS) - {"day"}
    assert len(SCENARIOS) >= 18
    for sc in SCENARIOS.values():
        assert sc.description and 1 <= sc.difficulty <= 5


def test_every_scenario_passes_the_independent_checker(suite: dict[str, Path]) -> None:
    checker = shared_path("tools", "check_recording.py")
    folders = sorted((str(p) for p in suite.values()), key=lambda f: -(Path(f) / "weights.csv").stat().st_size)
    # two checker processes side by side, balanced by size: it reads every row in pure Python
    procs = [subprocess.Popen([sys.executable, str(checker), *part], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for part in (folders[0::2], folders[1::2])]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stdout + stderr
    ok_lines = [line for stdout, _ in outputs for line in stdout.splitlines() if line.startswith("ok ")]
    assert len(ok_lines) == len(folders)
    assert all("signature" not in stdout for stdout, _ in outputs), "the checker must verify pass signatures"


def test_every_scenario_reads_back_as_written(suite: dict[str, Path]) -> None:
    for name, folder in suite.items():
        rec = read_recording(folder)
        assert rec.truth is not None and rec.tracks, name
        assert rec.truth["scenario"] == name
        assert [v["pass"] for v in rec.truth["visits"]] and set(v["pass"] for v in rec.truth["visits"]) == set(
            rec.nonces), name
        assert len(rec.config.sensors) == len(rec.config_raw["sensors"]) > 150
        assert np.all(np.diff(rec.weights.t) >= 0)
        assert all(s.rate_hz and s.tare_g for s in rec.config.sensors)


def test_the_reader_gets_back_what_simulate_produced(tmp_path: Path) -> None:
    out = simulate("party", 5)
    rec = read_recording(write_recording(out, tmp_path / "rec"))
    assert len(rec.weights) == len(out.t)
    np.testing.assert_array_equal(rec.weights.sensor, out.sensor)
    np.testing.assert_allclose(rec.weights.t, out.t, atol=6e-5)
    both = ~np.isnan(out.grams)
    np.testing.assert_array_equal(np.isnan(rec.weights.grams), ~both)
    np.testing.assert_allclose(rec.weights.grams[both], out.grams[both], atol=6e-3)
    assert [(e.kind, e.pass_text, e.track) for e in rec.gate] == [(e.kind, e.pass_text, e.track) for e in out.gate]
    assert rec.tracks is not None and len(rec.tracks) == len(out.tracks)
    assert rec.truth == out.truth


def _digest(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def test_same_scenario_and_seed_give_byte_identical_recordings_across_processes(tmp_path: Path) -> None:
    """Regression guard: nothing may depend on hash randomisation, dict order or the wall clock."""
    code = "import sys; from appliance.sim import generate; generate('adversarial', 3, sys.argv[1])"
    for n, hash_seed in enumerate(("1", "987")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"run{n}")], check=True, env=env, timeout=300)
    first, second = _digest(tmp_path / "run0"), _digest(tmp_path / "run1")
    assert set(first) == {"store.toml", "weights.csv", "gate.csv", "tracks.csv", "truth.json"}
    assert first == second


def test_another_seed_is_another_day(tmp_path: Path) -> None:
    a = _digest(generate("single-pick", 1, tmp_path / "a"))
    b = _digest(generate("single-pick", 2, tmp_path / "b"))
    assert all(a[name] != b[name] for name in a)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    out = simulate("single-pick", 1)
    broken = type(out)(out.scenario, out.seed, out.config_raw, out.weights, out.gate, out.tracks,
                       {"visits": [{"pass": object()}]}, out.people)
    with pytest.raises(TypeError):
        write_recording(broken, tmp_path / "rec")
    assert list(tmp_path.iterdir()) == []
