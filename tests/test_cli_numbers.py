"""Numbers on the command line are checked before any work starts: a count of 0, a negative seed or
a speed of -1 get argparse's one-line error naming the option and the bound, never a traceback; an
unknown scenario is named before any work."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from appliance.cli import main, number, whole


@pytest.mark.parametrize(("argv", "option", "bound"), [
    (["bench", "accuracy", "--seeds", "0"], "--seeds", "at least 1"),
    (["bench", "accuracy", "--first-seed", "-3"], "--first-seed", "at least 0"),
    (["bench", "accuracy", "--workers", "0"], "--workers", "at least 1"),
    (["bench", "shelves", "--sensors", "0"], "--sensors", "at least 1"),
    (["bench", "shelves", "--hz", "0"], "--hz", "greater than 0"),
    (["bench", "shelves", "--seconds", "-1"], "--seconds", "greater than 0"),
    (["bench", "shelves", "--picks-per-second", "nan"], "--picks-per-second", "at least 0"),
    (["demo", "--speed", "-1"], "--speed", "at least 0"),
    (["demo", "--seed", "-1"], "--seed", "at least 0"),
    (["bench", "crash", "--shoppers", "1"], "--shoppers", "at least 2"),
    (["sandbox-processor", "--port", "70000"], "--port", "between 1 and 65535"),
    (["sim", "generate", "--scenario", "browse", "--seed", "x", "out"], "--seed", "expected a whole number"),
    (["bench", "vault", "--chunk", "0"], "--chunk", "at least 1"),
])
def test_a_number_out_of_range_is_refused_with_the_option_and_its_bound(
        capsys: pytest.CaptureFixture[str], argv: list[str], option: str, bound: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and bound in err
    assert "Traceback" not in err


def test_whole_and_number_accept_their_bounds_and_refuse_beyond() -> None:
    assert whole(1)("1") == 1 and whole(0, 10)("10") == 10
    assert number(0)("0") == 0.0 and number(0, above=True)("0.5") == 0.5
    for parse, text in ((whole(1), "0"), (whole(0, 10), "11"), (number(0, above=True), "0"), (number(0), "inf"),
                        (number(0), "-0.1"), (whole(0), "1.5")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_demo_of_an_unknown_scenario_is_refused_before_any_simulating(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scenario", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "no scenario 'nosuch'" in err and "simulating" not in err


def test_bench_accuracy_refuses_a_setting_no_scenario_has_before_simulating(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "accuracy", "--scenario", "single-pick", "--set", "hands=1"]) == 1
    err = capsys.readouterr().err
    assert "--set: scenario 'single-pick' has no setting 'hands'" in err and "hand_share" in err
    assert main(["bench", "accuracy", "--scenario", "single-pick", "--set", "hand_share=2"]) == 1
    assert "hand_share must be a share in [0, 1], got 2" in capsys.readouterr().err
    assert main(["bench", "accuracy", "--scenario", "single-pick", "--set", "hand_share=abc"]) == 1
    assert "--set: hand_share must be a number, got 'abc'" in capsys.readouterr().err
    assert main(["bench", "accuracy", "--scenario", "single-pick", "--set", "dead_silent=1.5"]) == 1
    assert "--set: dead_silent must be a whole number, got 1.5" in capsys.readouterr().err


def test_sim_generate_refuses_a_setting_of_the_wrong_kind_naming_it(capsys: pytest.CaptureFixture[str],
                                                                      tmp_path: Path) -> None:
    assert main(["sim", "generate", "--scenario", "rush", "--set", "shoppers=2.5", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "shoppers must be a whole number, got 2.5" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_bench_accuracy_runs_every_scenario_under_the_settings_given(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "accuracy", "--scenario", "single-pick", "--seeds", "1", "--workers", "1"]
    level = logging.getLogger("appliance").level
    assert main(args) == 0
    assert logging.getLogger("appliance").level == level  # quiet while it ran, not for whoever goes on
    assert "single-pick *           1      1  1.0000  100.0%" in capsys.readouterr().out
    # a tracker that misses every frame: nobody is near the take, nothing is charged
    assert main([*args, "--set", "miss_p=1.0"]) == 0
    out = capsys.readouterr().out
    assert "single-pick *           1      1  0.0000    0.0%" in out and "settings miss_p=1.0," in out
