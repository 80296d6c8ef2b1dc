"""`appliance replay` writes its receipts whole or says in one line why it cannot, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import main
from appliance.sim import generate


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate("single-pick", 3, tmp_path_factory.mktemp("rec") / "shop")


def test_receipts_into_a_folder_are_refused_before_replaying(recording: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(recording), "--out", str(tmp_path)]) == 1
    assert f"cannot write receipts to {tmp_path}: it is a folder" in capsys.readouterr().err


def test_receipts_under_a_file_name_fail_in_one_line_and_leave_nothing(recording: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x", encoding="utf-8")
    assert main(["replay", str(recording), "--out", str(blocker / "receipts.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("appliance replay: cannot write receipts to") and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_receipts_go_where_asked_with_their_folder_made(recording: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "day" / "receipts.json"
    assert main(["replay", str(recording), "--out", str(out)]) == 0
    assert out.exists() and "1 visits" in capsys.readouterr().out
