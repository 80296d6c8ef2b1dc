"""`appliance bench accuracy`: the scenario suite over several seeds, scored against the simulator's truth.

Each (scenario, seed) is simulated in memory, replayed through the same loop as live operation
and scored as spec/recording.md says. Runs spread over worker processes; the figures do not
depend on how many.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.replay import receipts_document, replay
from appliance.sim.score import Score, score


@dataclass(frozen=True, slots=True)
class RunScore:
    scenario: str
    seed: int
    score: Score


@functools.cache
def _walkers() -> tuple[object, ...]:
    """Pedestrian cut-outs for filming, made once per worker process."""
    from appliance.config.model import VisionSettings
    from appliance.sim.cameras import PETS_VIDEO, pedestrians
    from appliance.vision.detector import OnnxDetector

    return tuple(pedestrians(PETS_VIDEO, OnnxDetector.from_settings(VisionSettings())))


Job = tuple[str, int, str, tuple[tuple[str, Any], ...]]


def score_one(job: Job) -> RunScore:
    """Simulate (with the job's setting overrides), replay from `level` (tracks in memory; detections
    or video from a filmed recording), score."""
    from appliance.sim.live import as_recording
    from appliance.sim.simulator import simulate

    scenario, seed, level, changed = job
    if level == "tracks":
        rec = as_recording(simulate(scenario, seed, **dict(changed)))
        doc = receipts_document(replay(rec))
        return RunScore(scenario, seed, score(doc, rec.truth))
    from appliance.sim.recording import read_recording
    from appliance.sim.simulator import write_recording

    with tempfile.TemporaryDirectory(prefix="walkout-bench-") as tmp:
        folder = write_recording(simulate(scenario, seed, **dict(changed)), Path(tmp) / "rec", cameras=2,
                                 walkers=_walkers())
        rec = read_recording(folder)
        doc = receipts_document(replay(rec, level))
    return RunScore(scenario, seed, score(doc, rec.truth))


def run_suite(scenarios: Sequence[str], seeds: Sequence[int], workers: int = 2,
              progress: Callable[[int, int], None] | None = None, level: str = "tracks",
              changed: Mapping[str, Any] | None = None) -> list[RunScore]:
    """Score every scenario on every seed; `changed` overrides sensor or tracker settings in all."""
    fixed = tuple(sorted((changed or {}).items()))
    jobs: list[Job] = [(s, seed, level, fixed) for s in scenarios for seed in seeds]
    results: list[RunScore] = []
    if workers <= 1:
        for k, job in enumerate(jobs):
            results.append(score_one(job))
            if progress:
                progress(k + 1, len(jobs))
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for k, r in enumerate(pool.map(score_one, jobs)):
            results.append(r)
            if progress:
                progress(k + 1, len(jobs))
    return results


def table(results: Sequence[RunScore], single: dict[str, bool]) -> str:
    """One row per scenario and a total: visits, micro F1, exact receipts, overcharge, review rate."""
    rows = [f"{'scenario':<20} {'runs':>4} {'visits':>6} {'F1':>7} {'exact':>7} {'overcharge':>10} "
            f"{'review/1000':>11} {'mean F1/rec':>11}"]
    by: dict[str, list[RunScore]] = {}
    for r in results:
        by.setdefault(r.scenario, []).append(r)

    def line(name: str, runs: Sequence[RunScore]) -> str:
        total = Score()
        for r in runs:
            total = total + r.score
        mean_f1 = sum(r.score.f1 for r in runs) / len(runs)
        return (f"{name:<20} {len(runs):>4} {total.visits:>6} {total.f1:>7.4f} {total.exact_share:>7.1%} "
                f"{total.overcharge_share:>10.3%} {total.review_per_1000:>11.1f} {mean_f1:>11.4f}")

    for name, runs in by.items():
        rows.append(line(name + (" *" if single.get(name) else ""), runs))
    rows.append(line("ALL", results))
    singles = [r for r in results if single.get(r.scenario)]
    if singles:
        rows.append(line("single-shopper *", singles))
    return "\n".join(rows)


def print_progress(done: int, total: int) -> None:
    print(f"\r  {done}/{total} runs", end="\n" if done == total else "", file=sys.stderr, flush=True)
