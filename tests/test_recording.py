"""The recording reader accepts the format exactly and names file, line and field of any fault."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from shopkit import T0, make_pass, store_raw

from appliance.events import GateEvent, TrackPoint
from appliance.sim.recording import RecordingError, RecordingWriter, _Problems, _weights_careful, read_recording


def _write(path: Path, n: int = 40) -> Path:
    raw = store_raw()
    with RecordingWriter(path) as w:
        w.store(raw)
        t = T0 + np.repeat(np.arange(n) * 0.1, 3)
        s = np.tile(np.arange(3), n)
        g = 1500.0 + np.arange(t.size) * 0.01
        g[5] = np.nan
        w.weights(t, [x["id"] for x in raw["sensors"]], s, g)
        w.gate([GateEvent(T0 + 0.5, "entry", make_pass("AAAAAAAAAAAAAAAAAAAAAA", T0), ""),
                GateEvent(T0 + 3.0, "exit", "", "")])
        w.tracks([TrackPoint(T0 + 0.6, "t1", 1.0, 0.4), TrackPoint(T0 + 0.7, "t1", 1.0, 0.5, (1.1, 3.9, 1.0))])
        w.truth({"visits": [{"pass": "AAAAAAAAAAAAAAAAAAAAAA", "lines": [{"sku": "cola", "qty": 1}]}]})
    return path


def test_a_written_recording_passes_the_independent_checker_and_reads_back(tmp_path: Path) -> None:
    rec_dir = _write(tmp_path / "rec")
    checker = shared_path("tools", "check_recording.py")
    out = subprocess.run([sys.executable, str(checker), str(rec_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    rec = read_recording(rec_dir)
    assert len(rec.weights) == 120 and np.isnan(rec.weights.grams).sum() == 1
    assert rec.levels == ["tracks"] and rec.tracks is not None and rec.tracks[1].hand == (1.1, 3.9, 1.0)
    assert rec.nonces == ["AAAAAAAAAAAAAAAAAAAAAA"]


def test_the_fast_and_careful_weight_readers_agree(tmp_path: Path) -> None:
    rec = read_recording(_write(tmp_path / "rec"))
    careful = _weights_careful(tmp_path / "rec" / "weights.csv", [s.id for s in rec.config.sensors], _Problems())
    assert np.array_equal(careful.t, rec.weights.t)
    assert np.array_equal(careful.sensor, rec.weights.sensor)
    assert np.array_equal(careful.grams, rec.weights.grams, equal_nan=True)


@pytest.mark.parametrize(
    ("file", "line_no", "new_line", "expected"),
    [
        ("weights.csv", 4, f"{T0 + 0.1},g1.s1.p1,12x.5", "weights.csv:4 grams: not a number: '12x.5'"),
        ("weights.csv", 4, f"{T0 + 0.1},g1.s1.p9,1200", "weights.csv:4 sensor: unknown sensor 'g1.s1.p9'"),
        ("weights.csv", 4, f"{T0 + 0.1},g1.s1.p1", "weights.csv:4: 2 fields, header has 3"),
        ("weights.csv", 4, f"{T0 - 5},g1.s1.p1,1200", "weights.csv:4 t: rows are not sorted by t"),
        ("weights.csv", 4, f"{T0 + 0.1},g1.s1.p1,inf", "weights.csv:4 grams: not finite: 'inf'"),
        ("weights.csv", 1, "time,sensor,grams", "weights.csv:1: header must start with t,sensor,grams"),
        ("tracks.csv", 2, f"{T0 + 0.6},t1,one,0.4,,,", "tracks.csv:2 x: not a number: 'one'"),
        ("gate.csv", 3, f"{T0 + 3},leave,,", "gate.csv:3 event: must be entry or exit, got 'leave'"),
        ("gate.csv", 2, f"{T0 + 0.5},entry,WO1.abc.def,", "gate.csv:2 pass: malformed"),
    ],
)
def test_a_malformed_file_is_rejected_naming_file_line_and_field(
    tmp_path: Path, file: str, line_no: int, new_line: str, expected: str
) -> None:
    rec_dir = _write(tmp_path / "rec")
    lines = (rec_dir / file).read_text().splitlines()
    lines[line_no - 1] = new_line
    (rec_dir / file).write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError) as err:
        read_recording(rec_dir)
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_a_forged_pass_and_a_reused_pass_are_rejected(tmp_path: Path) -> None:
    rec_dir = _write(tmp_path / "rec")
    gate = (rec_dir / "gate.csv").read_text().splitlines()
    entry = gate[1]
    sig = entry.split(",")[2]
    forged = entry.replace(sig, sig[:-2] + ("BB" if sig.endswith("AA") else "AA"))
    (rec_dir / "gate.csv").write_text("\n".join([gate[0], forged, gate[2]]) + "\n")
    with pytest.raises(RecordingError, match="pass"):
        read_recording(rec_dir)
    (rec_dir / "gate.csv").write_text("\n".join([gate[0], entry, entry.replace(f"{T0 + 0.5}", f"{T0 + 1}"),
                                                  gate[2]]) + "\n")
    with pytest.raises(RecordingError, match="pass used twice"):
        read_recording(rec_dir)


def test_missing_parts_are_named(tmp_path: Path) -> None:
    rec_dir = _write(tmp_path / "rec")
    (rec_dir / "tracks.csv").unlink()
    (rec_dir / "gate.csv").unlink()
    with pytest.raises(RecordingError) as err:
        read_recording(rec_dir)
    text = str(err.value)
    assert "gate.csv: missing (required)" in text and "needs tracks.csv, detections.csv or video/" in text


def test_truth_must_name_known_visits_and_products(tmp_path: Path) -> None:
    rec_dir = _write(tmp_path / "rec")
    (rec_dir / "truth.json").write_text('{"visits": [{"pass": "nobody-nobody-nobody", "lines": [{"sku": "x"}]}]}')
    with pytest.raises(RecordingError) as err:
        read_recording(rec_dir)
    assert any("visits[0].pass" in p for p in err.value.problems)
    assert any("unknown sku 'x'" in p for p in err.value.problems)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    dest = tmp_path / "rec"
    with pytest.raises(RuntimeError), RecordingWriter(dest) as w:
        w.store(store_raw())
        raise RuntimeError("power cut")
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_rewriting_a_recording_replaces_it_whole(tmp_path: Path) -> None:
    dest = _write(tmp_path / "rec", n=10)
    shutil.copy(dest / "weights.csv", tmp_path / "old.csv")
    _write(dest, n=20)
    assert len(read_recording(dest).weights) == 60


def test_writing_over_a_folder_that_is_not_a_recording_is_refused_and_leaves_it_whole(tmp_path: Path) -> None:
    from appliance.sim.recording import DestinationTakenError

    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "letter.txt").write_text("dear shop owner", encoding="utf-8")
    with pytest.raises(DestinationTakenError, match=r"letter\.txt"), RecordingWriter(mine) as w:
        w.store({})
    assert [p.name for p in tmp_path.iterdir()] == ["documents"]  # no temporary folder left either
    assert (mine / "letter.txt").read_text(encoding="utf-8") == "dear shop owner"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(DestinationTakenError, match="not a recording folder"), RecordingWriter(a_file):
        pass
    assert a_file.read_text(encoding="utf-8") == "x"


def test_an_earlier_recording_or_an_empty_folder_is_replaced(tmp_path: Path) -> None:
    from appliance.sim.recording import check_destination

    empty = tmp_path / "empty"
    empty.mkdir()
    check_destination(empty)
    check_destination(tmp_path / "absent")
    old = tmp_path / "old"
    old.mkdir()
    for name in ("store.toml", "weights.csv", "truth.json"):
        (old / name).write_text("", encoding="utf-8")
    (old / "video").mkdir()
    check_destination(old)
