"""The real AiFi BENCHMARK-1 recording: imported, checked, replayed to exactly one bottle of water."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import shared_path

from appliance.replay import receipts_document, replay
from appliance.sim.recording import read_recording


def test_benchmark_1_replays_to_exactly_one_bottle_of_water(tmp_path: Path) -> None:
    src = shared_path("data", "aifi-benchmark-1")
    out = tmp_path / "bench1"
    cli = [sys.executable, "-m", "appliance"]
    done = subprocess.run([*cli, "import", "aifi", str(src), str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    check = subprocess.run([sys.executable, str(shared_path("tools", "check_recording.py")), str(out)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout
    rec = read_recording(out)
    assert rec.tracks is not None and all(p.track == rec.tracks[0].track for p in rec.tracks)
    doc = receipts_document(replay(rec))
    (visit,) = doc["visits"]
    assert visit["lines"] == [{"sku": "071142008582", "name": "ARRWHD SPRNG WTR", "qty": 1, "amount": 1}]
    assert visit["review"] == []
    receipts = tmp_path / "receipts.json"
    again = tmp_path / "again.json"
    for target in (receipts, again):
        subprocess.run([*cli, "replay", str(out), "--out", str(target)], check=True, capture_output=True, timeout=120)
    assert json.loads(receipts.read_text())["visits"] == doc["visits"]
    assert receipts.read_bytes() == again.read_bytes(), "replay must be deterministic, byte for byte"


def test_the_importer_names_what_is_missing(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "appliance", "import", "aifi", str(tmp_path), str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "missing plate_data.json" in done.stderr
