"""Step detection on load-cell streams: turns absolute, noisy, drifting readings into shelf events.

Each plate has a stable level. While a plate is quiet (every reading near the level and the mean
of the latest readings on it), the level follows slow drift and the plate's noise is learnt; this
check runs on whole blocks of readings from all plates at once with numpy, which is what makes a
store of 850 plates at 60 Hz cheap. A plate whose readings leave the level becomes busy and is
followed sample by sample until its readings hold still for `settle_s`; the settled level minus the
old one is the plate's change. A hand that rests and lifts leaves no change; a pick leaves a
negative one. A change too small for any reading to stand out from a noisy plate's scatter is
caught by the level parting from an anchor that follows only slow drift, and timed from the
plate's recent block means. Plate changes that overlap in time on neighbouring plates of one
shelf are grouped into one `ShelfEvent` (a product spans plates; a unit can straddle two), and
deciding what they mean is left to product inference and fusion.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from appliance.config import Sensor, ShelfSettings, Stock
from appliance.events import FloatArray, IntArray, PlateChange, SampleBlock, ShelfEvent

logger = logging.getLogger(__name__)

NOISE_FLOOR_G = 0.3
NOISE_CEIL_G = 25.0
INITIAL_NOISE_G = 1.0
WARMUP_S = 2.0
LEVEL_TAU_S = 5.0
NOISE_TAU_S = 3.0
GROUP_MARGIN_S = 1.0
# A hand that presses a plate steadily and lets go looks like an item put down and taken again;
# changes on one plate this close together are one event (their sum), so it nets to nothing.
SAME_PLATE_MARGIN_S = 2.5
QUIET_NOISE_G = 3.0
MAX_WINDOW_BOOST = 4.0
INDEPENDENT_PER_S = 4.0
SIGNIFICANT_SIGMA = 4.0
NUDGE = 0.2
HISTORY = 64
PARTNER_MIN_G = 0.5
QUIET_AFTER_S = 0.1  # a partner plate's level after a change is read from this long after it
STIRRED_KEPT = 4
MEDIAN_OF = 7  # readings in the running median that finds when a change began
NEAR_OLD_SHARE = 0.25  # readings within this share of the change from the old level have not left it
ACT_LEAD_S = 0.5  # a hand holds an item about this long before its weight leaves the plate
# A small change on a noisy plate never takes a reading far enough off the level to make the plate
# busy, and the level would follow it as if it were drift. The level is therefore also compared with
# an anchor that follows only real drift; when they part by more than the level's own error allows,
# the plate's recent block means are searched for the moment it changed.
ANCHOR_TAU_S = 60.0
SLOW_STEP_MIN_G = 8.0  # never below this: a plate creeps a few grams after a heavy load
SLOW_SPLIT_MIN_S = 1.0  # readings needed on each side of the change
SLOW_RECHECK_S = 1.0  # a plate whose level and anchor stay apart is searched again this often
# The level a plate settles at is first read from the short window that held still; every quiet
# reading until the change is released says more. A change too small to stand out from that window
# (a 5 g sachet on a plate with 3 g of scatter) is kept in doubt and weighed again once the level
# after it is known as well as the level it left: the hand that touched the plate says when to look.
DOUBT_MIN_SHARE = 0.5  # a settled window this share of the least confirmable change off is worth a second look
REFINE_MAX_S = 10.0  # readings after settling that measure the new level (slow drift beyond)
REFINE_GAIN = 2.0 / 3.0  # measured again only from half as many readings again as the settling window's
# A plate can turn noisier than it was when its noise was learnt (a fridge compressor starts, a plate
# works loose). Its readings then keep crossing the busy limit and never hold still enough to settle,
# and noise is learnt only while quiet: it would stay busy. A busy stretch whose readings stay centred
# on the level it left, piece after piece, for longer than a hand handles a gondola (which shakes its
# plates for a few seconds: that is no reason to trust them less afterwards) is the plate's own
# scatter, and what they scatter by is its noise. A hand on the plate or an item gone moves them off it.
SCATTER_LEARN_S = 15.0  # readings of a busy stretch that show its scatter
SCATTER_PIECE_S = 0.5  # the stretch is cut into pieces this long; every one must stay on the level
MAD_SIGMA = 1.4826  # a normal scatter's standard deviation per median absolute deviation


@dataclass(slots=True)
class _Busy:
    """A plate being followed sample by sample since its readings left the stable level."""

    since: float
    t: list[float] = field(default_factory=list)
    g: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _PlateStep:
    """One plate's settled change: busy from `t_start` (which groups changes into events) to `t_end`;
    `t_act` is when the change itself began (what the event reports)."""

    sensor: int
    t_start: float
    t_end: float
    delta_g: float
    noise_g: float
    t_act: float
    old_var: float  # variance of the level the change was measured from (g^2)
    new_var: float  # variance of the level it settled at (g^2)
    old_level: float  # the level the change was measured from (g)


def stock_partners(sensors: Sequence[Sensor], stock: Sequence[Stock]) -> list[list[int]]:
    """For each plate (by index), the other plates that hold one of its products (a product spans plates)."""
    index = {sensor.id: i for i, sensor in enumerate(sensors)}
    shared: list[set[int]] = [set() for _ in sensors]
    for st in stock:
        plates = [index[sid] for sid in st.sensors]
        for a in plates:
            shared[a].update(b for b in plates if b != a)
    return [sorted(x) for x in shared]


def shelf_neighbours(sensors: Sequence[Sensor], gap_m: float = 0.03) -> list[list[int]]:
    """For each plate, the plates beside it on the same shelf (same height and facing, touching)."""
    out: list[list[int]] = [[] for _ in sensors]
    for i, a in enumerate(sensors):
        for j in range(i + 1, len(sensors)):
            b = sensors[j]
            if abs(a.pos[2] - b.pos[2]) > 0.05 or math.dist(a.facing, b.facing) > 0.05:
                continue
            dx, dy = b.pos[0] - a.pos[0], b.pos[1] - a.pos[1]
            across = abs(dx * a.facing[0] + dy * a.facing[1])
            along = abs(-dx * a.facing[1] + dy * a.facing[0])
            if across < 0.05 and along <= (a.width + b.width) / 2 + gap_m:
                out[i].append(j)
                out[j].append(i)
    return out


class StepDetector:
    """Turns blocks of readings into shelf events; one instance follows every plate of a store.

    Feed `SampleBlock`s in time order with `feed(block)`; it returns the events that became final.
    An event is final once its plates and their neighbours are quiet again, so a unit straddling two
    plates is reported as one event with two plate changes. `flush()` returns what is still held.

    A longer `settle_s` rejects more hand noise but delays every event by as much.
    """

    def __init__(self, sensors: Sequence[Sensor], settings: ShelfSettings,
                 shared: Sequence[Sequence[int]] | None = None) -> None:
        n = len(sensors)
        self.sensors = list(sensors)
        self.ids = [s.id for s in sensors]
        self.settings = settings
        self.level: FloatArray = np.full(n, np.nan)
        self.anchor: FloatArray = np.full(n, np.nan)
        self._counted_to = np.full(n, -np.inf)  # readings up to here are in a change already reported
        self._slow_checked = np.full(n, -np.inf)
        self.noise: FloatArray = np.full(n, INITIAL_NOISE_G)
        # How well each level is known (variance, g^2): what the readings averaged into it allow.
        self.level_var: FloatArray = np.full(n, INITIAL_NOISE_G**2)
        self.last_t: FloatArray = np.full(n, -np.inf)
        self.first_t: FloatArray = np.full(n, np.nan)
        self.faults = np.zeros(n, dtype=np.int64)
        self.lost = np.zeros(n, dtype=bool)
        self.neighbours = shelf_neighbours(sensors)
        # Neighbouring plates that hold the same product: a unit across their seam moves both, and a
        # noisy one's share may stay below its own threshold.
        self.partners = [[q for q in nb if shared is not None and q in shared[i]] for i, nb in
                         enumerate(self.neighbours)]
        self._index = {sid: i for i, sid in enumerate(self.ids)}
        self._hist_t = np.full((n, HISTORY), np.nan)
        self._hist_s = np.full((n, HISTORY), np.nan)  # when each block began
        self._hist_m = np.full((n, HISTORY), np.nan)
        self._hist_c = np.zeros((n, HISTORY))
        self._hist_i = np.zeros(n, dtype=np.int64)
        self._stirred: list[list[tuple[float, float]]] = [[] for _ in range(n)]  # recent busy stretches
        self._busy: dict[int, _Busy] = {}
        self._steps: list[_PlateStep] = []
        # Changes too small to stand out from their settling window, waiting to be weighed again.
        self.doubts: list[_PlateStep] = []
        self._hurried: set[int] = set()  # plates whose doubts are weighed at once, with what has come in
        self._now = -math.inf

    @property
    def busy_sensors(self) -> list[str]:
        return [self.ids[i] for i in sorted(self._busy)]

    def feed(self, block: SampleBlock) -> list[ShelfEvent]:
        """Process readings (sorted by t); returns the shelf events that are final.

        Quiet plates are summarised block by block, so where the blocks begin and end enters the
        arithmetic: the same readings cut differently can weigh a borderline change differently
        (hand-rest seed 6: a take's neighbour plate reads -0.7 g in 0.25 s blocks, -6.6 g in 0.2 s
        ones). The shop floor feeds slices of `appliance.replay.TICK_S` ending on whole multiples of
        it (`first_tick`), live and in replay alike, so both weigh the same readings the same way.
        """
        if len(block):
            self._now = max(self._now, float(block.t[-1]))
            self._process(block.t, block.sensor, block.grams)
        return self._release(final=False)

    def advance(self, now: float) -> list[ShelfEvent]:
        """Let time pass without readings (a quiet stretch); releases events and reports silence."""
        self._now = max(self._now, now)
        self._check_silence()
        return self._release(final=False)

    def flush(self) -> list[ShelfEvent]:
        """End of input: settle what can be settled and return every held event."""
        for s in list(self._busy):
            self._settle_at_end(s)
        return self._release(final=True)

    def hurry(self, plates: Sequence[str]) -> None:
        """At the next feed, weigh the doubtful changes on these plates with the readings so far, and
        release the changes settled on them without waiting `SAME_PLATE_MARGIN_S` for one that
        might follow on the same plate: their shopper has left and waits for the receipt, and
        nothing more of theirs can follow there."""
        self._hurried.update(self._index[p] for p in plates)

    def unmeasured_partners(self, plates: Sequence[str], since: float) -> list[str]:
        """Plates beside these that share goods with them but have not reported since `since` (dead,
        or only faults): part of a unit lying across their seam may have moved without being weighed."""
        mine = {self._index[p] for p in plates}
        out = {q for p in mine for q in self.partners[p] if q not in mine and (self.lost[q] or self.last_t[q] < since)}
        return [self.ids[q] for q in sorted(out)]

    # --- quiet plates, whole blocks at once -----------------------------------------------------

    def _process(self, t: FloatArray, sensor: IntArray, grams: FloatArray) -> None:
        fault = np.isnan(grams)
        if fault.any():
            np.add.at(self.faults, sensor[fault], 1)
            t, sensor, grams = t[~fault], sensor[~fault], grams[~fault]
        if not t.size:
            return
        order = np.argsort(sensor, kind="stable")
        t, sensor, grams = t[order], sensor[order], grams[order]
        starts = np.flatnonzero(np.r_[True, sensor[1:] != sensor[:-1]])
        ends = np.r_[starts[1:], sensor.size]
        ids = sensor[starts]
        counts = ends - starts
        block_start = t[starts]
        block_end = t[ends - 1]
        prev_t = self.last_t[ids]
        self.last_t[ids] = block_end
        if self.lost[ids].any():
            for s in ids[self.lost[ids]]:
                logger.info("sensor %s reports again", self.ids[s])
                self.lost[s] = False

        fresh = np.isnan(self.first_t[ids])
        self.first_t[ids[fresh]] = block_start[fresh]
        means = np.add.reduceat(grams, starts) / counts
        slot = self._hist_i[ids] % HISTORY
        self._hist_t[ids, slot] = (block_start + block_end) / 2
        self._hist_s[ids, slot] = block_start
        self._hist_m[ids, slot] = means
        self._hist_c[ids, slot] = counts
        self._hist_i[ids] += 1
        level = np.where(np.isnan(self.level[ids]), means, self.level[ids])
        self.level[ids] = level
        dev = grams - np.repeat(level, counts)
        max_dev = np.maximum.reduceat(np.abs(dev), starts)
        noise = self.noise[ids]
        warming = block_end - self.first_t[ids] < WARMUP_S
        sample_limit = np.maximum(self.settings.busy_sigma * noise, self.settings.min_step_g)
        mean_limit = np.maximum(2.5 * noise, 0.75 * self.settings.min_step_g)
        busy_now = (np.fromiter((s in self._busy for s in ids.tolist()), dtype=bool, count=ids.size)
                    if self._busy else np.zeros(ids.size, dtype=bool))
        quiet = ~busy_now & (warming | ((max_dev <= sample_limit) & (np.abs(means - level) <= mean_limit)))

        if quiet.any():
            q = np.flatnonzero(quiet)
            qids = ids[q]
            # Follow slow drift and learn each plate's noise (RMS about the level, which includes
            # the slow oscillation real plates show) with time constants in seconds, not blocks.
            span = np.where(np.isfinite(prev_t[q]), block_end[q] - prev_t[q], block_end[q] - block_start[q])
            span = np.maximum(span, 1e-3)
            tau_level = np.where(warming[q], 0.5, LEVEL_TAU_S)
            a_level = 1.0 - np.exp(-span / tau_level)
            # While warming up, every reading so far counts alike: a plate that scatters by 8 g must
            # not leave warming up believed to scatter by 4 (starting from INITIAL_NOISE_G, the
            # time constant would have had too little time), or it is busy from then on.
            a_noise = 1.0 - np.exp(-span / NOISE_TAU_S)
            if warming[q].any():
                w = np.flatnonzero(warming[q])
                a_noise[w] = span[w] / np.maximum(block_end[q[w]] - self.first_t[qids[w]], span[w])
            ms = np.add.reduceat(dev * dev, starts)[q] / counts[q]
            self.level[qids] = level[q] + a_level * (means[q] - level[q])
            rms = np.clip(np.sqrt(ms), NOISE_FLOOR_G, NOISE_CEIL_G)
            self.noise[qids] = np.sqrt((1 - a_noise) * self.noise[qids] ** 2 + a_noise * rms**2)
            # The level averages about 2 * tau seconds of readings, a few independent per second:
            # that is its error once settled, and its own error relaxes towards it.
            level_error = self.noise[qids] / np.sqrt(np.maximum(1.0, 2.0 * tau_level * INDEPENDENT_PER_S))
            keep = (1.0 - a_level) ** 2
            self.level_var[qids] = keep * self.level_var[qids] + (1.0 - keep) * level_error**2
            anchor = np.where(warming[q] | np.isnan(self.anchor[qids]), self.level[qids], self.anchor[qids])
            self.anchor[qids] = anchor + (1.0 - np.exp(-span / ANCHOR_TAU_S)) * (self.level[qids] - anchor)
            # (only plates past warming up are compared: their tau is LEVEL_TAU_S)
            parted = np.abs(self.level[qids] - self.anchor[qids]) > np.maximum(
                SLOW_STEP_MIN_G, SIGNIFICANT_SIGMA * level_error)
            for s in qids[parted & ~warming[q]]:
                self._slow_step(int(s))
        for k in np.flatnonzero(~quiet):
            s = int(ids[k])
            a, b = starts[k], ends[k]
            self._follow(s, t[a:b], grams[a:b])

    def _slow_step(self, s: int) -> None:
        """The level parted from the anchor: find when in the recent block means the plate changed
        (the split that best separates them) and report it as a step if it is significant."""
        if self._now - self._slow_checked[s] < SLOW_RECHECK_S:
            return
        if any(d.sensor == s for d in self.doubts):
            return  # a change after a touch is being weighed already, knowing when the hand was there
        self._slow_checked[s] = self._now
        order = np.argsort(self._hist_t[s])
        t, m, c = self._hist_t[s][order], self._hist_m[s][order], self._hist_c[s][order]
        ok = np.isfinite(t) & (t > self._counted_to[s])
        for since, still in self._stirred[s]:
            ok &= (t < since) | (t > still)  # a hand on the plate is not its level
        t, m, c = t[ok], m[ok], c[ok]
        if t.size < 4:
            return
        w = np.cumsum(c)
        wm = np.cumsum(c * m)
        total_w, total_wm = float(w[-1]), float(wm[-1])
        best: tuple[float, int] | None = None
        for k in range(1, t.size):
            if t[k - 1] - t[0] < SLOW_SPLIT_MIN_S or t[-1] - t[k] < SLOW_SPLIT_MIN_S:
                continue
            nb, na = float(w[k - 1]), total_w - float(w[k - 1])
            diff = (total_wm - float(wm[k - 1])) / na - float(wm[k - 1]) / nb
            stat = abs(diff) * math.sqrt(nb * na / (nb + na))
            if best is None or stat > best[0]:
                best = (stat, k)
        if best is None:
            return
        k = best[1]
        before = float(wm[k - 1] / w[k - 1])
        after = float((total_wm - wm[k - 1]) / (total_w - w[k - 1]))
        delta = after - before
        noise = float(self.noise[s])
        # the error of a difference of two means, each of a few independent readings per second
        n_before = max(1.0, (t[k - 1] - t[0]) * INDEPENDENT_PER_S)
        n_after = max(1.0, (t[-1] - t[k]) * INDEPENDENT_PER_S)
        if abs(delta) < max(SLOW_STEP_MIN_G, SIGNIFICANT_SIGMA * noise * math.sqrt(1 / n_before + 1 / n_after)):
            return
        moment = float((t[k - 1] + t[k]) / 2)
        self._steps.append(_PlateStep(s, moment - ACT_LEAD_S, moment, delta, noise, moment - ACT_LEAD_S,
                                      noise**2 / n_before, noise**2 / n_after, before))
        self.level[s] = self.anchor[s] = after
        self.level_var[s] = noise**2 / n_after
        self._counted_to[s] = moment
        logger.debug("slow change of %.1f g on %s", delta, self.ids[s])

    # --- busy plates, sample by sample --------------------------------------------------------------

    def _follow(self, s: int, t: FloatArray, g: FloatArray) -> None:
        busy = self._busy.get(s)
        if busy is None:
            limit = max(self.settings.busy_sigma * self.noise[s], self.settings.min_step_g)
            away = np.flatnonzero(np.abs(g - self.level[s]) > limit)
            first = int(away[0]) if away.size else 0
            busy = self._busy[s] = _Busy(since=float(t[first]))
            t, g = t[first:], g[first:]
        busy.t.extend(t.tolist())
        busy.g.extend(g.tolist())
        self._try_settle(s, busy)

    def _try_settle(self, s: int, busy: _Busy) -> None:
        tt = np.asarray(busy.t)
        gg = np.asarray(busy.g)
        noise = self.noise[s]
        window = self._window(s)
        n = tt.size
        if n < 3 or tt[-1] - tt[0] < window:
            return
        # Earliest end index j whose trailing window [t_j - settle_s, t_j] holds still.
        start_idx = np.searchsorted(tt, tt - window, side="left")
        csum = np.r_[0.0, np.cumsum(gg)]
        csq = np.r_[0.0, np.cumsum(gg * gg)]
        idx = np.arange(n)
        cnt = idx - start_idx + 1
        ok_span = (tt - tt[start_idx] >= 0.8 * window) & (cnt >= 3)
        mean = (csum[idx + 1] - csum[start_idx]) / cnt
        var = np.maximum((csq[idx + 1] - csq[start_idx]) / cnt - mean * mean, 0.0)
        steady = ok_span & (np.sqrt(var) <= 1.5 * noise + 0.5)
        hits = np.flatnonzero(steady)
        for j in hits:
            a = int(start_idx[j])
            seg = gg[a : j + 1]
            m = float(seg.mean())
            if np.max(np.abs(seg - m)) <= 4.0 * noise + 1.0:
                self._settled(s, busy, a, int(j), m)
                return
        scatter = self._own_scatter(s, tt, gg)
        if scatter is not None:
            logger.debug("sensor %s scatters by %.1f g, more than the %.1f g learnt", self.ids[s], scatter, noise)
            self.noise[s] = scatter
            self._try_settle(s, busy)
            return
        if tt[-1] - busy.since > self.settings.max_busy_s:
            logger.warning("sensor %s busy for over %.0f s; re-levelled", self.ids[s], self.settings.max_busy_s)
            tail = gg[tt >= tt[-1] - window]
            # a median is about a quarter less efficient than a mean (pi / 2 in variance)
            self._settled(s, busy, n - tail.size, n - 1, float(np.median(tail)), math.pi / 2)

    def _own_scatter(self, s: int, tt: FloatArray, gg: FloatArray) -> float | None:
        """What plate `s` scatters by, read from its busy readings `tt`, `gg`, when they are only its
        own scatter around the level they left and that scatter is larger than its learnt noise;
        else None. The scatter is read within `SCATTER_PIECE_S` pieces of the last
        `SCATTER_LEARN_S` of them (so that a change between pieces does not pass for scatter), and
        they must not have left the level (`_left_level`): a hand resting on the plate, an item taken
        or set down, even one lifted and put back, moves some piece off it. A change too small to
        stand out from the scatter the plate really has could not be told from it anyway."""
        if tt[-1] - tt[0] < SCATTER_LEARN_S:
            return None
        first = int(np.searchsorted(tt, tt[-1] - SCATTER_LEARN_S))
        tt, off = tt[first:], gg[first:] - self.level[s]
        bounds = _pieces(tt)
        scatter = _scatter(off, bounds)
        if not self.noise[s] < scatter <= NOISE_CEIL_G or self._left_level(s, tt, off, bounds, scatter):
            return None
        return scatter

    def moving(self, s: int) -> bool:
        """Whether busy plate `s` (by index) has readings that left its level (a hand on it, an item
        taken or set down) rather than only scattering around it, by its noise or by what they
        scatter within their pieces (it may be noisier than it has learnt yet); under two pieces of
        readings are too few to tell. A plate only scattering has no change under way: nobody needs
        to wait for it."""
        busy = self._busy.get(s)
        if busy is None:
            return False
        tt, off = np.asarray(busy.t), np.asarray(busy.g) - self.level[s]
        bounds = _pieces(tt)
        scatter = float(self.noise[s])
        if tt[-1] - tt[0] >= 2 * SCATTER_PIECE_S:
            scatter = max(scatter, _scatter(off, bounds))
        return self._left_level(s, tt, off, bounds, scatter)

    def _left_level(self, s: int, tt: FloatArray, off: FloatArray, bounds: IntArray, scatter: float) -> bool:
        """Whether readings taken at `tt`, `off` plate `s`'s level by these grams, have left it rather
        than scattered around it by `scatter`: their median as a whole, or that of any
        `SCATTER_PIECE_S` piece of them (`bounds`, from `_pieces`), stands out from the level
        (medians, which a glitch does not move; a median is as good as a mean of 2 / pi as many)."""
        level_var = float(self.level_var[s])
        n_all = max(1.0, float(tt[-1] - tt[0]) * INDEPENDENT_PER_S * 2.0 / math.pi)
        if abs(float(np.median(off))) > SIGNIFICANT_SIGMA * math.sqrt(level_var + scatter**2 / n_all):
            return True
        n_piece = max(1.0, SCATTER_PIECE_S * INDEPENDENT_PER_S * 2.0 / math.pi)
        limit = SIGNIFICANT_SIGMA * math.sqrt(level_var + scatter**2 / n_piece)
        return any(abs(float(np.median(off[a:b]))) > limit for a, b in itertools.pairwise(bounds))

    def _window(self, s: int) -> float:
        """How long plate `s` must hold still: longer on a noisy plate, whose level a short window
        cannot pin down (its mean is only as good as the square root of the readings in it)."""
        boost = min(MAX_WINDOW_BOOST, max(1.0, (float(self.noise[s]) / QUIET_NOISE_G) ** 2))
        return self.settings.settle_s * boost

    def _settled(self, s: int, busy: _Busy, a: int, j: int, new_level: float, efficiency: float = 1.0) -> None:
        old = float(self.level[s])
        old_var = float(self.level_var[s])
        delta = new_level - old
        noise = float(self.noise[s])
        # Readings close in time are not independent (slow wobble), so count a few per second.
        n_eff = max(1.0, (busy.t[j] - busy.t[a]) * INDEPENDENT_PER_S)
        # The new level is the mean of the settled window: as good as its readings' scatter (the
        # plate's, or the window's own when that is larger) over the independent readings in it.
        spread = max(noise, float(np.std(busy.g[a : j + 1])))
        new_var = efficiency * spread**2 / n_eff
        significant = abs(delta) >= max(self.settings.min_step_g, SIGNIFICANT_SIGMA * noise / math.sqrt(n_eff))
        if significant:
            act = self._act_start(busy, a, old, delta)
            self._steps.append(_PlateStep(s, busy.since, busy.t[a], delta, noise, act, old_var, new_var, old))
            self.level[s] = self.anchor[s] = new_level
            self.level_var[s] = new_var
            self._counted_to[s] = busy.t[a]
        else:
            if abs(delta) >= DOUBT_MIN_SHARE * self._least_change(s, old_var):
                # Perhaps a small item: weighed again once more readings have come in.
                act = self._act_start(busy, a, old, delta)
                self.doubts.append(_PlateStep(s, busy.since, busy.t[a], delta, noise, act, old_var, new_var, old))
            # Noise, not a change: keep the long-run level rather than jump to a short window's mean.
            self.level[s] = old + NUDGE * delta
            self.level_var[s] = (1.0 - NUDGE) ** 2 * old_var + NUDGE**2 * new_var
        del self._busy[s]
        self._stirred[s] = [*self._stirred[s][-(STIRRED_KEPT - 1):], (busy.since, busy.t[a])]
        rest_t = np.asarray(busy.t[j + 1 :])
        rest_g = np.asarray(busy.g[j + 1 :])
        if rest_t.size:
            self._process(rest_t, np.full(rest_t.size, s, dtype=np.int64), rest_g)

    @staticmethod
    def _act_start(busy: _Busy, a: int, old: float, delta: float) -> float:
        """When the change itself began: a plate can be stirred for seconds before it (a palm resting
        on the shelf above shakes the frame, a hand hovers), and that time says nothing about the
        moment the weight left. The last moment before settling that the readings (a short running
        median, which shaking barely moves) were still near the old level, less ACT_LEAD_S for the
        hand to get hold; never before the plate first stirred. A hand pressing on the plate itself
        moves the median well away from the old level, so a press keeps the moment it began."""
        g = np.asarray(busy.g[: a + 1])
        if g.size < MEDIAN_OF:
            return busy.since
        smooth = np.median(np.lib.stride_tricks.sliding_window_view(g, MEDIAN_OF), axis=1)
        near_old = np.flatnonzero(np.abs(smooth - old) <= NEAR_OLD_SHARE * abs(delta))
        if not near_old.size:
            return busy.since
        t_left = busy.t[int(near_old[-1]) + MEDIAN_OF // 2]
        return max(busy.since, t_left - ACT_LEAD_S)

    def _settle_at_end(self, s: int) -> None:
        busy = self._busy[s]
        tt = np.asarray(busy.t)
        tail = np.asarray(busy.g)[tt >= tt[-1] - self._window(s)]
        if tail.size >= 3 and float(np.std(tail)) <= 1.5 * self.noise[s] + 0.5:
            self._settled(s, busy, len(busy.t) - tail.size, len(busy.t) - 1, float(np.mean(tail)))
        else:
            del self._busy[s]

    def _check_silence(self) -> None:
        silent = (self._now - self.last_t > self.settings.silent_s) & np.isfinite(self.last_t) & ~self.lost
        for s in np.flatnonzero(silent):
            logger.warning("sensor %s silent for over %.0f s", self.ids[s], self.settings.silent_s)
            self.lost[s] = True

    # --- grouping plate changes into shelf events ---------------------------------------------

    def _release(self, final: bool) -> list[ShelfEvent]:
        hurried, self._hurried = self._hurried, set()
        if self.doubts:
            self._resolve_doubts(final, hurried)
        if not self._steps:
            return []
        self._check_silence()
        steps = sorted(self._steps, key=lambda st: st.t_start)
        parent = list(range(len(steps)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, a in enumerate(steps):
            for j in range(i + 1, len(steps)):
                b = steps[j]
                if b.t_start > a.t_end + SAME_PLATE_MARGIN_S:
                    break
                same = b.sensor == a.sensor
                if same or (b.sensor in self.neighbours[a.sensor] and b.t_start <= a.t_end + GROUP_MARGIN_S):
                    parent[root(j)] = root(i)
        groups: dict[int, list[_PlateStep]] = {}
        for i, st in enumerate(steps):
            groups.setdefault(root(i), []).append(st)
        out: list[ShelfEvent] = []
        keep: list[_PlateStep] = []
        for members in groups.values():
            plates = {m.sensor for m in members}
            near = plates.union(*(self.neighbours[p] for p in plates))
            t_end = max(m.t_end for m in members)
            waiting = any(p in self._busy for p in near) or (
                self._now < t_end + SAME_PLATE_MARGIN_S and not plates & hurried)
            if waiting and not final:
                keep.extend(members)
                continue
            out.append(self._event(self._weigh_again(members)))
        self._steps = keep
        out.sort(key=lambda e: (e.t_end, e.t_start))
        return out

    def _least_change(self, s: int, old_var: float) -> float:
        """The smallest change plate `s` can confirm when weighed again: `min_step_g`, or what stands
        out from the level before it and the best level after it (`REFINE_MAX_S` of readings)."""
        best_after = float(self.noise[s]) ** 2 / (REFINE_MAX_S * INDEPENDENT_PER_S)
        return max(self.settings.min_step_g, SIGNIFICANT_SIGMA * math.sqrt(old_var + best_after))

    def _doubt_wait(self, step: _PlateStep) -> float:
        """How long after settling a doubtful change is weighed again: until the level after it is
        known as well as the level before it was, but never longer than `REFINE_MAX_S`."""
        until_known = step.noise_g**2 / (INDEPENDENT_PER_S * max(step.old_var, 1e-9))
        return min(REFINE_MAX_S, max(SAME_PLATE_MARGIN_S, until_known))

    def _resolve_doubts(self, final: bool, hurried: set[int]) -> None:
        """Weigh again the doubtful changes whose time has come (or whose plate a hand touched again,
        which ends what the readings after them can tell): one that now stands out from the errors
        of the levels on both sides of it is a change like any other; the rest were noise."""
        keep: list[_PlateStep] = []
        for d in self.doubts:
            s = d.sensor
            due = final or self._now >= d.t_end + self._doubt_wait(d) or s in self._busy or s in hurried
            if not due:
                keep.append(d)
                continue
            after = self._level_since(s, d.t_end)
            if after is None:
                continue
            level, var, cut = after
            delta = level - d.old_level
            if abs(delta) < max(self.settings.min_step_g, SIGNIFICANT_SIGMA * math.sqrt(d.old_var + var)):
                logger.debug("a small change on %s was noise", self.ids[s])
                continue
            self._steps.append(replace(d, delta_g=delta, new_var=var))
            self._counted_to[s] = max(self._counted_to[s], d.t_end)
            if not cut or s in self._busy:  # its level since, and what a hand on it now is weighed from
                self.level[s] = self.anchor[s] = level
                self.level_var[s] = var
        self.doubts = keep

    def _weigh_again(self, members: list[_PlateStep]) -> list[_PlateStep]:
        """The plate changes of an event about to be released, each plate's last one measured again
        from every quiet reading since it settled (when they say more than its settling window)."""
        last: dict[int, _PlateStep] = {}
        for m in members:
            if m.sensor not in last or m.t_end > last[m.sensor].t_end:
                last[m.sensor] = m
        out: list[_PlateStep] = []
        for m in members:
            if last[m.sensor] is m:
                after = self._level_since(m.sensor, m.t_end)
                if after is not None and after[1] <= REFINE_GAIN * m.new_var:
                    m = replace(m, delta_g=after[0] - m.old_level, new_var=after[1])
            out.append(m)
        return out

    def _level_since(self, s: int, t0: float) -> tuple[float, float, bool] | None:
        """Plate `s`'s level from its block means since `t0` until a hand next touched it (or
        `REFINE_MAX_S`): (level, its variance, whether a later touch cut the readings short), or
        None without a block that lies wholly inside."""
        t1 = min(self._now, t0 + REFINE_MAX_S)
        cut = False
        busy = self._busy.get(s)
        later = [since for since, _ in self._stirred[s] if since > t0]
        if busy is not None:
            later.append(busy.since)
        if self._counted_to[s] > t0:
            later.append(float(self._counted_to[s]))
        if later and min(later) < t1:
            t1, cut = min(later), True
        start, mid, m, c = self._hist_s[s], self._hist_t[s], self._hist_m[s], self._hist_c[s]
        end = 2.0 * mid - start
        inside = np.isfinite(start) & (start >= t0) & (end <= t1)
        for since, still in self._stirred[s]:
            inside &= (end < since) | (start > still)  # a hand on the plate is not its level
        if not inside.any():
            return None
        level = float(np.average(m[inside], weights=c[inside]))
        span = float(np.max(end[inside]) - np.min(start[inside]))
        n_eff = max(1.0, span * INDEPENDENT_PER_S)
        return level, float(self.noise[s]) ** 2 / n_eff, cut

    def _quiet_change(self, s: int, t0: float, t1: float) -> tuple[float, float, float] | None:
        """How far a plate that stayed below its own thresholds moved across [t0, t1], from its recent
        block means: (change, seconds of readings behind it, level after), or None without enough of
        them. Readings taken while the plate was busy count neither before nor after: a hand resting
        on it a moment earlier, across the event or from just after (the event is released only once
        it lifted) is not part of its level, and a hand that rested across two events must not be
        read as set down in one and taken away in the other."""
        t, m, c = self._hist_t[s], self._hist_m[s], self._hist_c[s]
        before = (t >= t0 - 3.0) & (t < t0 - 0.2)
        after = (t > t1 + QUIET_AFTER_S) & (t <= t1 + 2.0)
        for since, still in self._stirred[s]:
            before &= (t < since - 0.2) | (t > still)
            after &= (t < since - 0.2) | (t > still)
        if before.sum() < 2 or after.sum() < 2:
            return None
        mb = float(np.average(m[before], weights=c[before]))
        ma = float(np.average(m[after], weights=c[after]))
        span = float(np.ptp(t[before]) + np.ptp(t[after])) + 0.5
        return ma - mb, span, ma

    def _event(self, members: list[_PlateStep]) -> ShelfEvent:
        by_plate: dict[int, list[_PlateStep]] = {}
        for m in members:
            by_plate.setdefault(m.sensor, []).append(m)
        # A plate whose steps net to nothing (a unit lifted and put back, a palm pressed and lifted)
        # joins the event but does not stretch its time: the moment is that of the plates that changed,
        # which is when the taker's hand was there (a neighbour's take and return around someone
        # else's pick must not make the pick look longer than it was).
        net = {p: sum(m.delta_g for m in ms) for p, ms in by_plate.items()}
        changed = [m for m in members if abs(net[m.sensor]) >= max(self.settings.min_step_g, 3.0 * m.noise_g)]
        timed = changed or members
        t_start = min(m.t_act for m in timed)
        t_end = max(m.t_end for m in timed)
        changes = [PlateChange(self.ids[p], net[p], max(m.noise_g for m in ms), min(m.t_act for m in ms),
                               max(m.t_end for m in ms), _net_sd(ms)) for p, ms in sorted(by_plate.items())]
        total = sum(net.values())
        for p in sorted(by_plate):
            for q in self.partners[p]:
                if q in by_plate or q in self._busy or any(c.sensor == self.ids[q] for c in changes):
                    continue
                moved = self._quiet_change(q, t_start, t_end)
                if moved is None:
                    continue
                delta, span, after = moved
                # Unbiased even when small: leaving a share of the unit out would bias the weight low.
                noise = float(self.noise[q]) / math.sqrt(max(1.0, span * INDEPENDENT_PER_S))
                # A unit across the seam moves both plates the same way: a partner moving against
                # the change is its scatter, unless it stands out.
                along = delta * total > 0 or abs(delta) >= SIGNIFICANT_SIGMA * noise
                if abs(delta) >= PARTNER_MIN_G and along:
                    # (`noise_g` is this error too, not the plate's scatter: the thresholds that
                    # judge a change by its `noise_g` have always judged a partner's so)
                    changes.append(PlateChange(self.ids[q], delta, noise, delta_sd_g=noise))
                    # counted here: the partner's level moving to it is not a change of its own
                    if self._counted_to[q] < t_end:  # (unless a later change of its own set it since)
                        self.anchor[q] = after
                        self._counted_to[q] = t_end + QUIET_AFTER_S
        changes.sort(key=lambda c: c.sensor)
        return ShelfEvent(t_start, t_end, tuple(changes))


def _pieces(tt: FloatArray) -> IntArray:
    """Where readings taken at `tt` (in order) fall into `SCATTER_PIECE_S` pieces counted back from
    the latest (so the latest piece is whole): the index each piece begins at, then the end."""
    piece = ((tt[-1] - tt) // SCATTER_PIECE_S).astype(np.int64)
    return np.flatnonzero(np.r_[True, piece[1:] != piece[:-1], True])


def _scatter(off: FloatArray, bounds: IntArray) -> float:
    """What readings scatter by within their pieces (`bounds` from `_pieces`), each about its own
    median: a change between two pieces, or inside one, barely moves it."""
    spread = np.concatenate([off[a:b] - np.median(off[a:b]) for a, b in itertools.pairwise(bounds)])
    return MAD_SIGMA * float(np.median(np.abs(spread)))


def _net_sd(steps: Sequence[_PlateStep]) -> float:
    """Standard error of the net change of one plate's steps: the level before the first and the
    level after the last (the levels between them are in both a step's start and the next's end)."""
    ordered = sorted(steps, key=lambda st: st.t_end)
    return math.sqrt(ordered[0].old_var + ordered[-1].new_var)
