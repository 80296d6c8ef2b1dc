"""`appliance sim ...` lists the scenarios and writes recordings; mistakes get one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from appliance.sim import SCENARIOS, simulate
from appliance.sim.recording import read_recording


def test_sim_list_names_every_scenario_with_its_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "list"]) == 0
    out = capsys.readouterr().out
    for name, sc in SCENARIOS.items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert sc.description in line
        assert ("yes" if sc.single_shopper else "no") == line.split()[1]
    assert next(line for line in out.splitlines() if line.startswith("day ")).split()[3] == "no"


def test_sim_generate_writes_a_recording_with_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "rec"
    assert main(["sim", "generate", "--scenario", "browse", "--seed", "4", "--set", "hand_share=0.0", str(dest)]) == 0
    assert "wrote" in capsys.readouterr().out
    rec = read_recording(dest)
    assert rec.truth is not None and rec.truth["scenario"] == "browse" and rec.truth["seed"] == 4
    assert rec.tracks is not None and not any(p.hand for p in rec.tracks)


@pytest.mark.parametrize(("args", "message"), [
    (["--scenario", "nosuch"], "no scenario 'nosuch'"),
    (["--scenario", "browse", "--set", "colour=red"], "has no setting 'colour'"),
    (["--scenario", "browse", "--set", "hand_share"], "NAME=VALUE"),
    (["--scenario", "browse", "--set", "miss_p=2"], "miss_p must be a share"),
])
def test_sim_generate_refuses_mistakes_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   args: list[str], message: str) -> None:
    assert main(["sim", "generate", *args, str(tmp_path / "rec")]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rec").exists()


def test_simulate_refuses_unknown_scenarios_and_settings() -> None:
    with pytest.raises(ValueError, match="no scenario"):
        simulate("nosuch", 1)
    with pytest.raises(ValueError, match="shoppers"):
        simulate("single-pick", 1, shoppers=3)


def test_a_long_run_reports_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    simulate("day", 1, duration_s=960.0, shoppers=1)
    err = capsys.readouterr().err
    assert "[sim" in err and "load cells" in err and "done" in err
    simulate("day", 1, duration_s=300.0, shoppers=1)
    assert capsys.readouterr().err == ""


def test_sim_show_draws_a_recording_with_or_without_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "rec"
    assert main(["sim", "generate", "--scenario", "return-same", "--seed", "2", str(dest)]) == 0
    assert main(["sim", "show", str(dest)]) == 0
    png = tmp_path / "rec.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    (dest / "truth.json").unlink()
    assert main(["sim", "show", str(dest), "--out", str(tmp_path / "bare.png"), "--events", "3"]) == 0
    assert (tmp_path / "bare.png").stat().st_size > 20_000
    (dest / "gate.csv").write_text("t,event,pass\n1,enter,\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["sim", "show", str(dest)]) == 1
    assert "gate.csv:2 event" in capsys.readouterr().err


def test_sim_generate_refuses_a_folder_that_is_not_a_recording_before_simulating(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("mine", encoding="utf-8")
    assert main(["sim", "generate", "--scenario", "rush", "--seed", "1", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "keep.txt" in err and "not replaced" in err and "simulating" not in err
    assert (tmp_path / "keep.txt").read_text(encoding="utf-8") == "mine"
