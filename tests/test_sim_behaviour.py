"""The simulated shop behaves like a shop: what the streams show matches what the truth says happened."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest

from appliance.config import parse_config
from appliance.gate.passes import verify_signature
from appliance.sim import STANDARD_SUITE, SimOutput, default_shop, simulate

SEEDS = (1, 2, 3)


@functools.lru_cache(maxsize=64)
def sim(name: str, seed: int, **overrides: Any) -> SimOutput:
    return simulate(name, seed, **overrides)


def events(out: SimOutput, act: str | None = None) -> list[dict[str, Any]]:
    return [e for v in out.truth["visits"] for e in v["events"] if act is None or e["act"] == act]


def readings(out: SimOutput, sensor_id: str, t0: float = -math.inf, t1: float = math.inf,
             ) -> tuple[np.ndarray, np.ndarray]:
    i = out.sensor_ids.index(sensor_id)
    m = (out.sensor == i) & (out.t >= t0) & (out.t < t1)
    return out.t[m], out.grams[m]


def level(out: SimOutput, sensor_ids: list[str], t0: float, t1: float) -> float:
    """The summed median reading of some plates over a window (faults ignored)."""
    total = 0.0
    for sid in sensor_ids:
        _, g = readings(out, sid, t0, t1)
        g = g[~np.isnan(g)]
        assert g.size >= 3, f"{sid} has too few readings in {t0:.1f}..{t1:.1f}"
        total += float(np.median(g))
    return total


def tolerance(grams: float) -> float:
    # noise of a median of a few samples, gain error (0.1 %) and creep (up to 0.2 %) of the step
    return 3.0 + 0.006 * abs(grams)


@pytest.mark.parametrize("seed", SEEDS)
def test_taking_a_unit_lowers_its_plates_by_its_true_weight(seed: int) -> None:
    out = sim("single-pick", seed)
    (take,) = events(out, "take")
    before = level(out, take["sensors"], take["t"] - 4.0, take["t"] - 1.3)
    after = level(out, take["sensors"], take["t"] + 1.5, take["t"] + 3.5)
    assert before - after == pytest.approx(take["grams"], abs=tolerance(take["grams"]))
    assert out.truth["visits"][0]["lines"] == [{"sku": take["sku"], "qty": 1}]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_put_back_restores_the_plate_level_within_noise(seed: int) -> None:
    out = sim("return-same", seed)
    back = events(out, "put-back")[0]
    same = [e for e in events(out) if e.get("sensors") == back["sensors"] and e["t"] <= back["t"]]
    first = min(e["t"] for e in same)
    expected = sum(e["grams"] * (1 if e["act"] == "put-back" else -1) for e in same if e["act"] in ("take", "put-back"))
    before = level(out, back["sensors"], first - 4.0, first - 1.3)
    after = level(out, back["sensors"], back["t"] + 1.5, back["t"] + 3.5)
    assert after - before == pytest.approx(expected, abs=tolerance(back["grams"]))
    kept = {line["sku"] for line in out.truth["visits"][0]["lines"]}
    taken_back = [e for e in same if e["act"] == "take"]
    if len(taken_back) == 1:
        assert back["sku"] not in kept


def test_a_dead_sensor_falls_silent_or_reports_only_faults() -> None:
    out = sim("noisy-sensors", 1)
    dead = {d["mode"]: d for d in out.truth["sensors"]["dead"]}
    assert set(dead) == {"silent", "faulting"}
    t, _ = readings(out, dead["silent"]["sensor"])
    assert t.size > 10 and t.max() < dead["silent"]["from"]
    t, g = readings(out, dead["faulting"]["sensor"])
    after = t >= dead["faulting"]["from"]
    assert after.sum() > 10 and np.isnan(g[after]).all()
    assert np.isfinite(g[~after]).mean() > 0.9


def test_noisy_sensors_drop_samples_in_bursts_and_report_faults() -> None:
    out = sim("noisy-sensors", 2)
    assert np.isnan(out.grams).mean() > 0.001
    gaps = 0
    for sensor in out.config_raw["sensors"]:
        t, _ = readings(out, sensor["id"])
        gaps += int(np.sum(np.diff(t) > 0.3 + 2.0 / sensor["rate_hz"]))
    assert gaps > 20


def test_quiet_plates_read_about_one_gram_of_noise() -> None:
    out = sim("single-pick", 4)
    first_entry = out.gate[0].t
    stds, declared = [], []
    for sensor in out.config_raw["sensors"]:
        t, g = readings(out, sensor["id"], out.start, first_entry)
        ok = ~np.isnan(g)
        t, g = t[ok], g[ok]
        trend = np.polyval(np.polyfit(t - t[0], g, 1), t - t[0])
        stds.append(float(np.std(g - trend)))
        declared.append(out.truth["sensors"]["noise_g"][sensor["id"]])
    assert 0.6 <= float(np.median(stds)) <= 1.3
    assert float(np.median(np.array(stds) / np.array(declared))) == pytest.approx(1.0, abs=0.2)
    assert float(np.percentile(stds, 90)) > 1.3 * float(np.median(stds)), "plates differ in noise"


def test_plates_report_at_their_declared_rates() -> None:
    out = sim("single-pick", 1)
    rates = set()
    for sensor in out.config_raw["sensors"]:
        t, _ = readings(out, sensor["id"])
        assert float(np.median(np.diff(t))) == pytest.approx(1.0 / sensor["rate_hz"], rel=0.03)
        rates.add(sensor["rate_hz"])
    assert min(rates) == 10.0 and max(rates) == 60.0 and len(rates) >= 4


def test_a_resting_hand_loads_the_plate_heavily_and_then_lets_go() -> None:
    out = sim("hand-rest", 2)
    rest = events(out, "rest-hand")[0]
    base = level(out, rest["sensors"], rest["t"] - 3.0, rest["t"] - 0.5)
    during = np.concatenate([readings(out, s, rest["t"] + 0.8, rest["until"] - 0.3)[1] for s in rest["sensors"]])
    assert np.nanmax(during) - base / len(rest["sensors"]) > 0.4 * rest["peak_g"] / len(rest["sensors"])
    nothing_moved = not [e for e in events(out) if e.get("sensors") == rest["sensors"]
                         and rest["t"] - 2 < e["t"] < rest["until"] + 3.5 and e["act"] != "rest-hand"]
    if nothing_moved:
        after = level(out, rest["sensors"], rest["until"] + 1.0, rest["until"] + 3.0)
        assert after == pytest.approx(base, abs=4.0 * len(rest["sensors"]) + 3.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_straddling_unit_weighs_on_two_plates_by_position(seed: int) -> None:
    out = sim("straddle", seed)
    take = next(e for e in events(out, "take") if len(e["sensors"]) == 2)
    drops = [level(out, [s], take["t"] - 4.0, take["t"] - 1.3) - level(out, [s], take["t"] + 1.5, take["t"] + 3.5)
             for s in take["sensors"]]
    others = [e for e in events(out) if e.get("sensors") == take["sensors"] and abs(e["t"] - take["t"]) < 4.0]
    total = sum(e["grams"] for e in others if e["act"] == "take")
    assert all(d > 2.0 for d in drops), drops
    assert sum(drops) == pytest.approx(total, abs=tolerance(total))


@pytest.mark.parametrize("seed", SEEDS)
def test_loose_goods_are_charged_by_the_grams_that_left_the_bin(seed: int) -> None:
    out = sim("loose-goods", seed)
    lines = [line for line in out.truth["visits"][0]["lines"] if "grams" in line]
    assert lines
    for line in lines:
        moves = [e for e in events(out) if e["act"] in ("scoop", "pour-back") and e["sku"] == line["sku"]]
        net = sum(e["grams"] if e["act"] == "scoop" else -e["grams"] for e in moves)
        assert line["grams"] == pytest.approx(net, abs=0.1)
        sensors = moves[0]["sensors"]
        before = level(out, sensors, moves[0]["t"] - 5.0, moves[0]["t"] - 2.5)
        after = level(out, sensors, moves[-1]["t"] + 2.5, moves[-1]["t"] + 3.8)
        assert before - after == pytest.approx(net, abs=tolerance(net) + 0.004 * before)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_unit_set_down_on_another_shelf_is_nobodys_and_flagged_misplaced(seed: int) -> None:
    out = sim("return-wrong-shelf", seed)
    (moved,) = events(out, "put-elsewhere")
    take = next(e for e in events(out, "take") if e["sku"] == moved["sku"])
    assert moved["sensors"] != take["sensors"]
    assert out.truth["misplaced"] == [{"sku": moved["sku"], "sensors": moved["sensors"]}]
    charged = {line["sku"]: line["qty"] for line in out.truth["visits"][0]["lines"]}
    assert moved["sku"] not in charged
    rise = (level(out, moved["sensors"], moved["t"] + 1.5, moved["t"] + 3.5)
            - level(out, moved["sensors"], moved["t"] - 4.0, moved["t"] - 1.3))
    assert rise == pytest.approx(moved["grams"], abs=tolerance(moved["grams"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_an_own_item_set_down_is_never_charged(seed: int) -> None:
    out = sim("foreign-item", seed)
    (down,) = events(out, "put-down-own")
    taken = {e["sku"] for e in events(out, "take")}
    assert {line["sku"] for line in out.truth["visits"][0]["lines"]} == taken
    picked = events(out, "pick-up-own")
    assert bool(out.truth["left_behind"]) != bool(picked)
    assert not events(out, "reached-empty"), "whoever picks their own item up finds it where they left it"
    rise = (level(out, down["sensors"], down["t"] + 1.5, down["t"] + 3.0)
            - level(out, down["sensors"], down["t"] - 4.0, down["t"] - 1.3))
    assert rise == pytest.approx(down["grams"], abs=tolerance(down["grams"]))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_party_shares_one_pass_and_walks_in_within_seconds(seed: int) -> None:
    out = sim("party", seed)
    entries = [e for e in out.gate if e.kind == "entry"]
    (visit,) = out.truth["visits"]
    assert len(entries) == 1 and 2 <= visit["party"] <= 4 and len(visit["people"]) == visit["party"]
    claims = verify_signature(entries[0].pass_text, {k: v["public_key"] for k, v in out.config_raw["issuers"].items()})
    assert claims.party == visit["party"] and claims.nonce == visit["pass"]
    line_y = out.config_raw["floor"]["entry"][0][1]
    crossings = []
    for path in out.people:
        inside = np.nonzero(path.xy[:, 1] > line_y)[0]
        crossings.append(float(path.t[inside[0]]))
    assert all(0 < c - entries[0].t < 10.0 for c in crossings)
    assert len([e for e in out.gate if e.kind == "exit"]) == visit["party"]


def test_every_entry_carries_a_valid_pass_issued_around_the_scan() -> None:
    out = sim("rush", 1)
    cfg = parse_config(out.config_raw)
    issuers = {k: v.public_key for k, v in cfg.issuers.items()}
    parties = {v["pass"]: v["party"] for v in out.truth["visits"]}
    nonces = []
    for e in (e for e in out.gate if e.kind == "entry"):
        claims = verify_signature(e.pass_text, issuers)
        assert claims.iat <= e.t < claims.exp and e.t - claims.iat <= 125
        assert claims.party == parties[claims.nonce]
        nonces.append(claims.nonce)
    assert len(nonces) == len(set(nonces)) == len(out.truth["visits"]) == 12
    other_day = default_shop(2).config_raw["issuers"]
    assert other_day != out.config_raw["issuers"], "the issuer key follows the seed"


def test_the_gate_names_the_track_only_sometimes() -> None:
    out = sim("rush", 2, gate_track_share=0.5)
    named = [e for e in out.gate if e.track]
    assert 0 < len(named) < len(out.gate)
    for e in named:
        near = [p for p in out.tracks if p.track == e.track and abs(p.t - e.t) < 1.0]
        assert near, f"gate names {e.track} at {e.t} but the tracker has no such track then"
    assert not any(e.track for e in sim("rush", 2, gate_track_share=0.0).gate)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_handed_over_item_is_charged_to_whoever_took_it_from_the_shelf(seed: int) -> None:
    out = sim("handoff", seed)
    gives = events(out, "give")
    assert len(gives) == 2
    person_visit = {p: v["pass"] for v in out.truth["visits"] for p in v["people"]}
    across = [g for g in gives if g["to_visit"] != person_visit[g["person"]]]
    assert len(across) == 1
    give = across[0]
    assert give["charged_to"] == person_visit[give["person"]]
    returned = [e for e in events(out, "put-back") if e["person"] == give["to"] and e["sku"] == give["sku"]]
    giver_lines = {line["sku"] for v in out.truth["visits"] if v["pass"] == give["charged_to"] for line in v["lines"]}
    assert (give["sku"] in giver_lines) != bool(returned)
    receiver = next(v for v in out.truth["visits"] if v["pass"] == give["to_visit"])
    assert give["sku"] not in {line["sku"] for line in receiver["lines"]}


@pytest.mark.parametrize("seed", SEEDS)
def test_two_or_three_shoppers_pick_side_by_side_at_once(seed: int) -> None:
    out = sim("crowd", seed)
    assert 2 <= len(out.truth["visits"]) <= 3
    first_takes = {}
    for e in events(out, "take"):
        first_takes.setdefault(e["person"], e)
    assert len(first_takes) == len(out.truth["visits"])
    gondolas = {e["sensors"][0].split(".")[0] for e in first_takes.values()}
    times = [e["t"] for e in first_takes.values()]
    assert len(gondolas) == 1 and max(times) - min(times) < 6.0
    xy = [path.at(float(np.mean(times))) for path in out.people]
    assert all(p is not None for p in xy)
    assert max(math.dist(a, b) for a in xy for b in xy if a and b) < 1.6


@pytest.mark.parametrize("seed", SEEDS)
def test_shoppers_reach_from_0_3_to_0_7_m_off_the_shelf_face(seed: int) -> None:
    out = sim("multi-unit", seed)
    shop = default_shop(seed)
    path = out.people[0]
    for e in events(out, "take"):
        plate = shop.plate(e["sensors"][0])
        body = path.at(e["t"] - 2.0)
        assert body is not None
        face = np.dot(np.subtract(body, plate.centre[:2]), plate.facing) - 0.2
        assert 0.25 <= face <= 0.75


@pytest.mark.parametrize("name", ["rush", "adversarial"])
def test_nobody_walks_through_a_gondola_and_everyone_leaves_through_the_exit(name: str) -> None:
    out = sim(name, 1)
    shop = default_shop(1)
    (x0, y0), (x1, _) = out.config_raw["floor"]["exit"]
    for path in out.people:
        for rect in shop.obstacles[:4]:
            inside = ((path.xy[:, 0] > rect.x0 + 0.05) & (path.xy[:, 0] < rect.x1 - 0.05)
                      & (path.xy[:, 1] > rect.y0 + 0.05) & (path.xy[:, 1] < rect.y1 - 0.05))
            assert not inside.any(), f"{path.person} walks through {rect}"
        last_inside = np.nonzero(path.xy[:, 1] > y0)[0][-1]
        assert path.xy[-1, 1] < y0 and x0 < path.xy[last_inside, 0] < x1
    assert len([e for e in out.gate if e.kind == "exit"]) == len(out.people)


def _track_errors(out: SimOutput) -> np.ndarray:
    path = out.people[0]
    errs = []
    for p in out.tracks:
        true = path.at(p.t)
        if true is not None:
            errs.append((p.x - true[0], p.y - true[1]))
    return np.array(errs)


def test_track_noise_is_as_declared() -> None:
    errs = np.concatenate([_track_errors(sim("browse", s, noise_m=0.08, fragment_per_min=0.0)) for s in SEEDS])
    assert float(np.std(errs)) == pytest.approx(0.08, rel=0.25)
    assert abs(float(np.mean(errs))) < 0.03


def test_tracks_come_at_about_ten_hertz_with_some_frames_missed() -> None:
    out = sim("browse", 1, fragment_per_min=0.0)
    t = np.array([p.t for p in out.tracks])
    assert float(np.median(np.diff(t))) == pytest.approx(0.1, abs=0.01)
    span = out.people[0].t[-1] - out.people[0].t[0]
    assert 0.9 * span * 10 < t.size < 0.995 * span * 10


def test_hand_points_show_up_near_the_shelf_during_reaches() -> None:
    out = sim("single-pick", 3, hand_share=1.0)
    shop = default_shop(3)
    (take,) = events(out, "take")
    plate = shop.plate(take["sensors"][0])
    hands = [p for p in out.tracks if p.hand is not None]
    assert hands and len(hands) < len(out.tracks) / 2
    at_lift = min(hands, key=lambda p: abs(p.t - take["t"]))
    assert abs(at_lift.t - take["t"]) < 0.3
    assert at_lift.hand is not None
    assert math.dist(at_lift.hand[:2], plate.centre[:2]) < 0.4
    assert abs(at_lift.hand[2] - plate.centre[2]) < 0.3
    assert not any(p.hand for p in sim("single-pick", 3, hand_share=0.0).tracks)


def test_a_faulty_tracker_fragments_tracks_and_shows_ghosts() -> None:
    """Ghosts are a Poisson process (about one a minute): over a few seeds some must appear."""
    runs = [sim("tracker-faults", seed) for seed in (1, 2, 3)]
    assert sum(o.truth["tracker"]["fragments"] for o in runs) > 0
    assert sum(o.truth["tracker"]["ghosts"] for o in runs) > 0
    for out in runs:
        assert len({p.track for p in out.tracks}) >= len(out.people) + out.truth["tracker"]["fragments"]


@pytest.mark.parametrize("name", [n for n in STANDARD_SUITE if n != "rush"])
def test_people_handle_goods_only_between_walking_in_and_walking_out(name: str) -> None:
    out = sim(name, 1)
    line_y = out.config_raw["floor"]["entry"][0][1]
    inside = {}
    for path in out.people:
        idx = np.nonzero(path.xy[:, 1] > line_y)[0]
        inside[path.person] = (float(path.t[idx[0]]), float(path.t[idx[-1]]))
    for e in events(out):
        t_in, t_out = inside[e["person"]]
        assert t_in < e["t"] < t_out, f"{e['person']} {e['act']} at {e['t']} outside {t_in}..{t_out}"
    people = {p for v in out.truth["visits"] for p in v["people"]}
    assert people == set(inside) and len(out.people) == len(people)
