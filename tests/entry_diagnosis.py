"""Diagnosis of entry binding: which pass the VisitBook gave each track, against who really carried it.

Run by hand, not a test. Uses the simulator's TrackerOutput.ids (which person carried which tracker
id when), captured by wrapping the simulator's tracker; that knowledge is for this diagnosis only
and never reaches the box. Only the gate part of the box runs (the VisitBook fed gate events and
track points in time order, ticked as replay ticks it), so a run takes seconds.

    .venv/bin/python tests/entry_diagnosis.py [--scenario adversarial rush] [--seeds 1 2 3] [--detail]

Per scenario, summed over the seeds:
  binds        every bind the book made (a track to a visit: a new person or a stitch to one)
  right/WRONG  the person carrying the track then belongs (or not) to the visit it was bound to
  ghost        no person carried the track (a tracker ghost) yet it was bound
  dup slot     a bind that opened a NEW person slot for someone the visit already had (a fragment
               counted as a newcomer: it uses up a party place)
  entry right/WRONG  the same, for binds made within --window s of a pass being shown
  held         people marked as possibly belonging to other visits (Person.also)
  stranger     visits whose people include someone of another visit (the majority of that person's
               points went to this visit)
  missing      visits one of whose people has the majority of their points elsewhere or nowhere
  wrong pts    track points followed as another visit's person, of all points
  wrong bind pts / wrong swap pts   of the wrong points, those on tracks the book bound itself (a
               new person or a stitch) and those on tracks a swap repair started
With --detail, each bind made within the window after a pass is listed: time since the start of the
recording (and since the latest pass), the track, the visit (first 6 characters) and person slot,
how (new person / stitch, and the caller), and who truly carried the track then; then every stretch
of 10+ points a person spent on another visit, with what started it. --tracks T0,T1 also lists the
gate events, each person's tracker ids and each track's first and last point between those seconds.
"""

from __future__ import annotations

import argparse
import bisect
import sys
from collections import Counter, defaultdict
from typing import Any

from simtruth import Carriers, simulate_seen

from appliance.events import GateEvent, TrackPoint
from appliance.gate import visits as visits_mod
from appliance.gate.floor import FloorMemory
from appliance.gate.passes import parse_pass_unchecked
from appliance.replay import TICK_S, merge_streams
from appliance.sim.live import as_recording

CAPTURED: dict[str, Any] = {}
TRACKS: list[str] = []


def _install_hooks() -> None:
    real_bind = visits_mod.VisitBook._bind

    def bind(self: visits_mod.VisitBook, track: str, visit: visits_mod.Visit, person: int | None = None) -> None:
        fresh_slot = person is None and track not in self.owner and visit.open_slots > 0
        stitched = person is not None and track not in self.owner
        if fresh_slot or stitched:
            h = self.memory.tracks.get(track)
            t = h.last_t if h is not None else self._frame_t
            caller = sys._getframe(1).f_code.co_name
            CAPTURED["binds"].append((t, track, visit.nonce, "new" if fresh_slot else "stitch",
                                      len(visit.people) if fresh_slot else person, caller))
        real_bind(self, track, visit, person)

    visits_mod.VisitBook._bind = bind  # type: ignore[method-assign]
    real_hand_over = visits_mod.VisitBook._hand_over

    def hand_over(self: visits_mod.VisitBook, to: dict[str, str], unmoved: frozenset[str] = frozenset()) -> None:
        for tid in to:
            if tid not in unmoved:
                CAPTURED["removed"].add((self.memory.tracks[tid].last_t, tid))
        real_hand_over(self, to, unmoved)

    visits_mod.VisitBook._hand_over = hand_over  # type: ignore[method-assign]


def _run_book(rec: Any) -> visits_mod.VisitBook:
    """The VisitBook alone, fed as replay feeds it (fusion never writes to the book)."""
    exits_from_gate = any(e.kind == "exit" for e in rec.gate)
    memory = FloorMemory()
    book = visits_mod.VisitBook(rec.config, memory, rec.config.gate.bind_window_s, exits_from_gate)
    real_add = memory.add
    adds: list[tuple[float, str]] = CAPTURED["adds"]

    def add(p: TrackPoint) -> Any:
        adds.append((p.t, p.track))
        return real_add(p)

    memory.add = add  # type: ignore[method-assign]
    tick = rec.start + TICK_S
    for item in merge_streams(rec.gate, rec.tracks):
        while item.t >= tick:
            book.tick(tick)
            book.leaving()
            memory.prune(tick)
            tick += TICK_S
        if isinstance(item, GateEvent):
            if item.kind == "entry":
                book.entry(item, parse_pass_unchecked(item.pass_text))
            else:
                book.exit(item)
        else:
            book.track(item)
        book.leaving()
    book.close_all(rec.end)
    return book


def diagnose(scenario: str, seed: int, detail: bool, window: float) -> Counter[str]:
    CAPTURED.update(binds=[], adds=[], removed=set())
    out, seen = simulate_seen(scenario, seed)
    rec = as_recording(out)
    book = _run_book(rec)
    visit_of_person = {p: v["pass"] for v in out.truth["visits"] for p in v["people"]}
    people_of_visit: dict[str, list[str]] = defaultdict(list)
    for p, v in visit_of_person.items():
        people_of_visit[v].append(p)
    carrier = Carriers(seen).at

    scans = sorted(e.t for e in rec.gate if e.kind == "entry")
    if TRACKS:
        t0, t1 = (float(x) + out.start for x in TRACKS[0].split(","))
        for e in rec.gate:
            if t0 <= e.t <= t1:
                nonce = parse_pass_unchecked(e.pass_text).nonce[:6] if e.kind == "entry" else ""
                print(f"  gate {e.t - out.start:7.2f} {e.kind} {nonce} party "
                      f"{parse_pass_unchecked(e.pass_text).party if e.kind == 'entry' else ''} track {e.track}")
        rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for q in rec.tracks:
            if t0 <= q.t <= t1:
                rows[q.track].append((q.t, q.x, q.y))
        for person, seq in sorted(seen.ids.items()):
            runs: list[list[Any]] = []
            for t, tid in seq:
                if not t0 <= t <= t1:
                    continue
                if runs and runs[-1][0] == tid and t - runs[-1][2] < 0.35:
                    runs[-1][2] = t
                else:
                    runs.append([tid, t, t])
            print(f"  {person} ({visit_of_person[person][:6]}): " + ", ".join(
                f"{tid} {a - out.start:.1f}-{b - out.start:.1f}" for tid, a, b in runs))
        for tid, pts in sorted(rows.items(), key=lambda kv: kv[1][0][0]):
            who = {carrier(tid, t) for t, _x, _y in pts}
            (ta, xa, ya), (tb, xb, yb) = pts[0], pts[-1]
            print(f"  track {tid:5} {sorted(w or 'ghost' for w in who)} {ta - out.start:7.2f} ({xa:5.2f},{ya:5.2f}) -> "
                  f"{tb - out.start:7.2f} ({xb:5.2f},{yb:5.2f}) {len(pts)} pts")
    counts: Counter[str] = Counter()
    # which true people each (visit, person slot) has been given so far, in bind order
    slot_people: dict[tuple[str, int], set[str]] = defaultdict(set)
    for t, track, nonce, how, slot, caller in sorted(CAPTURED["binds"]):
        who = carrier(track.split("~")[0], t)
        k = bisect.bisect_right(scans, t + visits_mod.EARLY_CROSSING_S) - 1
        since = t - scans[k] if k >= 0 else float("inf")
        at_entry = since <= window
        if who is None:
            verdict = "ghost"
        elif visit_of_person[who] == nonce:
            verdict = "right"
        else:
            verdict = "WRONG"
        counts["binds"] += 1
        counts[verdict] += 1
        if at_entry and who is not None:
            counts[f"entry {verdict}"] += 1
        if how == "new" and who is not None and any(who in ppl for (n, _s), ppl in slot_people.items() if n == nonce):
            counts["dup slot"] += 1
            verdict += " dup"
        if who is not None:
            slot_people[(nonce, slot)].add(who)
        if detail and at_entry:
            truth = f"{who} of {visit_of_person[who][:6]}" if who else "ghost"
            print(f"  {t - out.start:7.1f} (+{since:4.1f} s) {track:10} -> {nonce[:6]}#{slot} {how:6} {caller:12} "
                  f"truly {truth:14} {verdict}")
    # where each true person's points went
    removed = CAPTURED["removed"]
    went: dict[str, Counter[str | None]] = defaultdict(Counter)
    for t, internal in CAPTURED["adds"]:
        if (t, internal) in removed:
            continue
        who = carrier(internal.split("~")[0], t)
        if who is None:
            continue
        owned = book.owner.get(internal)
        went[who][owned[0] if owned else None] += 1
    bound_by_bind = {b[1] for b in CAPTURED["binds"]}
    for t, internal in CAPTURED["adds"]:
        if (t, internal) in removed:
            continue
        who = carrier(internal.split("~")[0], t)
        owned = book.owner.get(internal)
        if who is not None and owned is not None and owned[0] != visit_of_person[who]:
            counts["wrong bind pts" if internal in bound_by_bind else "wrong swap pts"] += 1
    if detail:
        bind_at = {b[1]: b for b in CAPTURED["binds"]}
        runs: dict[str, list[list[Any]]] = defaultdict(list)
        for t, internal in CAPTURED["adds"]:
            if (t, internal) in removed:
                continue
            who = carrier(internal.split("~")[0], t)
            owned = book.owner.get(internal)
            if who is None:
                continue
            v = owned[0] if owned else None
            r = runs[who]
            if r and r[-1][0] == internal and r[-1][1] == v:
                r[-1][3] = t
                r[-1][4] += 1
            else:
                r.append([internal, v, t, t, 1])
        for who, r in sorted(runs.items()):
            for internal, v, ta, tb, n in r:
                if v is None or v == visit_of_person[who] or n < 10:
                    continue
                how = bind_at.get(internal)
                origin = f"bound {how[3]} by {how[5]} at {how[0] - out.start:.1f}" if how else "from a swap repair"
                print(f"  WRONG {who} ({visit_of_person[who][:6]}) on {internal} -> {v[:6]} "
                      f"{ta - out.start:.1f}-{tb - out.start:.1f} ({n} pts), {origin}")
    wrong_pts = sum(n for who, c in went.items() for v, n in c.items() if v is not None and v != visit_of_person[who])
    counts["wrong pts"] += wrong_pts
    counts["points"] += sum(sum(c.values()) for c in went.values())
    majority = {who: c.most_common(1)[0][0] for who, c in went.items()}
    visits = list(book.closed) + list(book.visits.values())
    for v in visits:
        counts["visits"] += 1
        held = [p for p in v.people if p.also]
        counts["held"] += len(held)
        strangers = [who for who, m in majority.items() if m == v.nonce and visit_of_person[who] != v.nonce]
        missing = [who for who in people_of_visit[v.nonce] if majority.get(who) != v.nonce]
        counts["stranger"] += bool(strangers)
        counts["missing"] += bool(missing)
        if detail and (strangers or missing):
            print(f"  visit {v.nonce[:6]} party {v.party}: strangers {strangers} missing {missing}")
    return counts


KEYS = ["binds", "right", "WRONG", "ghost", "dup slot", "entry right", "entry WRONG", "held", "visits", "stranger",
        "missing", "wrong pts", "wrong bind pts", "wrong swap pts", "points"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", nargs="+", default=["party", "handoff", "crowd", "tracker-faults", "rush",
                                                       "adversarial"])
    ap.add_argument("--seeds", nargs="+", type=int, default=list(range(1, 11)))
    ap.add_argument("--window", type=float, default=12.0, help="seconds after a pass that count as its entry")
    ap.add_argument("--detail", action="store_true")
    ap.add_argument("--tracks", default="", help="T0,T1: list the tracks seen between these seconds")
    args = ap.parse_args()
    if args.tracks:
        TRACKS.append(args.tracks)
    _install_hooks()
    print(f"{'scenario':<16}" + "".join(f"{k:>12}" for k in KEYS))
    grand: Counter[str] = Counter()
    for sc in args.scenario:
        total: Counter[str] = Counter()
        for seed in args.seeds:
            if args.detail:
                print(f"{sc} seed {seed}")
            total.update(diagnose(sc, seed, args.detail, args.window))
        grand.update(total)
        print(f"{sc:<16}" + "".join(f"{total.get(k, 0):>12}" for k in KEYS), flush=True)
    print(f"{'ALL':<16}" + "".join(f"{grand.get(k, 0):>12}" for k in KEYS))


if __name__ == "__main__":
    main()
