"""Diagnosis of tracker id swaps: the simulator's true swaps against what the VisitBook did.

Uses the simulator's TrackerOutput.ids (which person carried which id when), captured by wrapping
the simulator's tracker; that knowledge is for this diagnosis only and never reaches the box.

    .venv/bin/python tests/swap_diagnosis.py --scenario rush --seeds 1 2 3 [--detail] [--trace P1,P2,SECONDS]

Columns, summed over the seeds: true swaps between people of different visits that the book
`repaired` (each person's points 1-6 s later go to their own visit), `repaired late` (wrong for up
to 1 s), `MISSED` (wrong afterwards), `wrong before` (one of them was already followed as someone
else), `unseen after`; `same-visit swap` (harmless: one cart); the book's own swaps that match a
true swap within 8 s (`box swap right`) or not (`BOX SWAP WRONG`); `wrong-visit points` (track
points followed as another visit's person) of all `points`; and the episodes of wrong following,
by what began them (a missed swap, a wrong repair, a new track bound to the wrong person), with
their points.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
from collections import Counter, defaultdict
from typing import Any

from simtruth import Carriers, simulate_seen

from appliance.gate import visits as visits_mod
from appliance.replay import replay
from appliance.sim.live import as_recording

CAPTURED: dict[str, Any] = {}
TRACE: list[str] = []


def _install_hooks() -> None:
    real_init = visits_mod.VisitBook.__init__

    def init(self: visits_mod.VisitBook, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        CAPTURED["book"] = self
        CAPTURED["adds"] = []
        CAPTURED["xy"] = []
        CAPTURED["removed"] = set()
        CAPTURED["swaps"] = []
        memory = self.memory
        real_add = memory.add

        def add(p: Any) -> Any:
            CAPTURED["adds"].append((p.t, p.track))
            CAPTURED["xy"].append((p.t, p.track, p.x, p.y))
            return real_add(p)

        memory.add = add  # type: ignore[method-assign]

    visits_mod.VisitBook.__init__ = init  # type: ignore[method-assign]
    real_hand_over = visits_mod.VisitBook._hand_over

    def hand_over(self: visits_mod.VisitBook, to: dict[str, str], unmoved: frozenset[str] = frozenset()) -> None:
        # A swap of two is a hand-over {a: b, b: a}; ids passed round three or more people are
        # recorded as the pairs (giver, taker), each of which a true swap between them explains.
        for tid in to:
            if tid not in unmoved:
                CAPTURED["removed"].add((self.memory.tracks[tid].last_t, tid))
        for a, b in to.items():
            if a < b or to.get(b) != a:
                CAPTURED["swaps"].append((self._frame_t, a, b, b not in unmoved))
        real_hand_over(self, to, unmoved)

    visits_mod.VisitBook._hand_over = hand_over  # type: ignore[method-assign]


def true_swaps(ids: dict[str, list[tuple[float, str]]]) -> list[tuple[float, str, str]]:
    """(time, person a, person b): a took an id that b carried last."""
    last_holder: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for person, rows in ids.items():
        for t, tid in rows:
            last_holder[tid].append((t, person))
    for rows in last_holder.values():
        rows.sort()
    out = []
    for person, rows in ids.items():
        for (_t0, i0), (t1, i1) in itertools.pairwise(rows):
            if i0 == i1:
                continue
            holders = last_holder[i1]
            k = bisect.bisect_left(holders, (t1, ""))
            if k > 0 and holders[k - 1][1] != person:
                out.append((t1, person, holders[k - 1][1]))
    # each swap shows twice (a takes b's, b takes a's) or once when one was unseen
    seen: set[tuple[str, str]] = set()
    uniq = []
    for t, a, b in sorted(out):
        key = (min(a, b), max(a, b))
        if any(abs(t - u) < 1.0 and {a, b} == {x, y} for u, x, y in uniq):
            continue
        uniq.append((t, a, b))
        seen.add(key)
    return uniq


def diagnose(scenario: str, seed: int, detail: bool) -> dict[str, int]:
    out, seen = simulate_seen(scenario, seed)
    replay(as_recording(out))
    book = CAPTURED["book"]
    visit_of_person = {p: v["pass"] for v in out.truth["visits"] for p in v["people"]}
    carriers = Carriers(seen)
    person_at, person_before = carriers.at, carriers.before

    # the box's attribution of each person's points
    attrib: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    internals: dict[str, list[tuple[float, str]]] = defaultdict(list)
    first_t: dict[str, float] = {}
    for t, internal in CAPTURED["adds"]:
        first_t.setdefault(internal, t)
    removed = CAPTURED["removed"]
    for t, internal in CAPTURED["adds"]:
        if (t, internal) in removed:
            continue
        person = person_at(internal.split("~")[0], t)
        if person is None:
            continue  # ghost
        owned = book.owner.get(internal)
        attrib[person].append((t, owned[0] if owned else None))
        internals[person].append((t, internal))
    for rows in attrib.values():
        rows.sort(key=lambda r: r[0])

    def share_right(person: str, t0: float, t1: float) -> float | None:
        rows = [v for t, v in attrib.get(person, []) if t0 <= t <= t1 and v is not None]
        if not rows:
            return None
        return sum(v == visit_of_person.get(person) for v in rows) / len(rows)

    counts: Counter[str] = Counter()
    swaps = true_swaps(seen.ids)
    for t, a, b in swaps:
        if visit_of_person.get(a) == visit_of_person.get(b):
            counts["same-visit swap"] += 1
            continue
        before = [share_right(p, t - 3.0, t - 0.05) for p in (a, b)]
        after = [share_right(p, t + 1.0, t + 6.0) for p in (a, b)]
        soon = [share_right(p, t, t + 1.0) for p in (a, b)]
        known = [x for x in after if x is not None]
        if any(x is not None and x < 0.5 for x in before):
            kind = "wrong before"
        elif not known:
            kind = "unseen after"
        elif all(x >= 0.5 for x in known):
            kind = "repaired" if all(x is None or x >= 0.5 for x in soon) else "repaired late"
        else:
            kind = "MISSED"
        counts[kind] += 1
        if detail:
            print(f"  swap t={t - out.start:7.1f} {a}/{b} {kind:14} before={before} soon={soon} after={after}")
    # the box's swaps: right ones follow a true swap between the same people
    for ft, ia, ib, _mb in CAPTURED["swaps"]:
        pa, pb = person_before(ia.split("~")[0], ft), person_before(ib.split("~")[0], ft)
        good = any(abs(ft - t) < 8.0 and {a, b} == {pa, pb} for t, a, b in swaps)
        counts["box swap right" if good else "BOX SWAP WRONG"] += 1
        if detail and not good:
            print(f"  box swap t={ft - out.start:7.1f} {ia}/{ib} ({pa}/{pb}) not a true swap")
    # seconds during which someone's points went to another visit than theirs
    wrong = 0
    for person, rows in attrib.items():
        wrong += sum(v is not None and v != visit_of_person.get(person) for _t, v in rows)
    counts["wrong-visit points"] = wrong
    for spec in TRACE:
        pa, pb, tc = spec.split(",")
        pos = {(round(t, 3), tid): (x, y) for t, tid, x, y in CAPTURED["xy"]}
        for person in (pa, pb):
            print(f"  trace {person} (visit {visit_of_person[person][:6]})")
            for t, internal in internals[person]:
                if abs(t - out.start - float(tc)) <= 2.5:
                    owned = book.owner.get(internal)
                    x, y = pos.get((round(t, 3), internal), (float("nan"), float("nan")))
                    who = owned[0][:6] if owned else None
                    print(f"    {t - out.start:7.2f} {internal:10} {x:6.2f} {y:6.2f} -> {who}")
    # episodes of wrong attribution and what started them
    for person, rows in attrib.items():
        ints = dict(internals[person])
        k = 0
        while k < len(rows):
            t, v = rows[k]
            if v is None or v == visit_of_person.get(person):
                k += 1
                continue
            j = k
            while j < len(rows) and rows[j][1] is not None and rows[j][1] != visit_of_person.get(person):
                j += 1
            internal = ints[t]
            if any(abs(t - ts) < 1.5 and person in (a, b) for ts, a, b in swaps):
                cause = "ep: missed swap"
            elif any(abs(ft - t) < 0.25 and internal.split('~')[0] in (ia.split('~')[0], ib.split('~')[0])
                     for ft, ia, ib, _m in CAPTURED["swaps"]):
                cause = "ep: box swap"
            elif abs(first_t.get(internal, -1) - t) < 0.01:
                cause = "ep: new track"
            else:
                cause = "ep: other"
            counts[cause] += 1
            counts[cause + " pts"] += j - k
            if detail:
                print(f"  wrong {person} from t={t - out.start:7.1f} for {rows[j - 1][0] - t:5.1f} s ({j - k} pts) "
                      f"{internal} {cause}")
            k = j
    counts["points"] = sum(len(r) for r in attrib.values())
    return dict(counts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", nargs="+", default=["crowd", "rush", "adversarial", "tracker-faults", "handoff",
                                                       "party"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    ap.add_argument("--detail", action="store_true")
    ap.add_argument("--trace", nargs="*", default=[], help="PERSON,PERSON,SECONDS")
    args = ap.parse_args()
    TRACE.extend(args.trace)
    _install_hooks()
    keys = ["repaired", "repaired late", "MISSED", "wrong before", "unseen after", "same-visit swap",
            "box swap right", "BOX SWAP WRONG", "wrong-visit points", "points",
            "ep: missed swap", "ep: box swap", "ep: new track", "ep: other", "ep: missed swap pts", "ep: box swap pts",
            "ep: new track pts", "ep: other pts"]
    print(f"{'scenario':<16}" + "".join(f"{k[:14]:>15}" for k in keys))
    for sc in args.scenario:
        total: Counter[str] = Counter()
        for seed in args.seeds:
            if args.detail:
                print(f"{sc} seed {seed}")
            c = diagnose(sc, seed, args.detail)
            total.update(c)
        print(f"{sc:<16}" + "".join(f"{total.get(k, 0):>15}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
