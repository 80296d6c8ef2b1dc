"""Recording what the shop floor decides in the vault, as it decides it, safely across a restart.

`FloorRecorder` is the shop floor's `FloorListener`: a visit opened becomes a vault visit with a
random id (the token goes in sealed, the pass only as a keyed hash of its nonce), each cart change
a cart line with its evidence, each uncertain line a review item (withdrawn, or amended to fewer
units, when the floor says its units came back to a shelf while it waited), and a visit's receipt
at exit the ONE transaction that closes the cart and writes its charge row.

Everything it does is safe to do twice. A source that is played again after a crash (a recording,
or devices redelivering) opens the same pass's visit again: the vault recognises the pass and
hands back the visit it opened, and the recorder, which knows how many cart lines and review
items that visit already has, stores only what is new (the floor files the review items again in
the same order, so the n-th is the visit's n-th stored item, whatever became of it since; a
withdrawal the vault already holds is refused and left at that, an amendment is the same again).
Closing a closed visit returns its charge.
Nonce-to-visit ids are kept in memory only.

A unit that comes back to a shelf after its shopper left (the floor's `credited_after_exit`)
becomes a line refund of that visit's charge once the charge is paid (`settle_returns`, called as
data time passes); until then it waits in memory, and a charge that ends unpaid needs none.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Mapping

from appliance.config import Product
from appliance.events import CartChange, Receipt, ReviewItem
from appliance.fusion.carts import Cart, receipt_for
from appliance.fusion.loop import REFUND_WINDOW_S
from appliance.gate.passes import PassClaims
from appliance.gate.visits import Visit as FloorVisit
from appliance.vault import Charge, ChargeStateError, Vault, VaultError
from appliance.vault.crashpoints import crash_point
from appliance.vault.records import PENDING, REQUIRES_ACTION, SUCCEEDED

logger = logging.getLogger(__name__)

CRASH_POINTS = ("cart.line_stored",)
RefundLine = Callable[[str, str, int], object]
"""Records a line refund: (order_ref, sku, units); the outbox's `refund_line`."""
_NOT_CODE = re.compile(r"[^a-z0-9]+")


@dataclasses.dataclass(frozen=True, slots=True)
class _Reviewed:
    """A review item the floor filed, and its id in the vault (0 if it could not be stored)."""

    item: ReviewItem
    item_id: int
    before_restart: bool  # stored before a restart, when the floor filed it the first time


def review_code(reason: str) -> str:
    """A review reason as the vault stores it: "which product?" -> "which_product"."""
    code = _NOT_CODE.sub("_", reason.lower()).strip("_")[:40].rstrip("_")
    return code or "uncertain"


class FloorRecorder:
    """The shop floor's listener that stores visits, cart lines, review items and charges in the vault.

    Args:
        vault: where it all goes.
        products: the store's products by sku, to price a cart rebuilt from stored lines.
        currency: the store's currency.
        on_charge: told of every charge row written (the outbox's `poke`).
        refund_line: records a line refund (the outbox's `refund_line`); None leaves returns after
            an exit in `returns` for someone else.
    """

    def __init__(
        self,
        vault: Vault,
        products: Mapping[str, Product],
        currency: str,
        on_charge: Callable[[Charge], None] = lambda charge: None,
        refund_line: RefundLine | None = None,
    ) -> None:
        self._vault = vault
        self._products = products
        self._currency = currency
        self._on_charge = on_charge
        self._refund_line = refund_line
        self._ids: dict[str, str] = {}
        self._closed: dict[str, tuple[str, float]] = {}  # nonce -> (visit id, left) within the refund window
        self.returns: list[tuple[str, str, int]] = []  # (visit id, sku, units) waiting for a paid charge
        self._lines_seen: dict[str, int] = {}
        self._lines_stored: dict[str, int] = {}
        self._review_seen: dict[str, int] = {}
        self._review_stored: dict[str, list[int]] = {}  # vault ids of a visit's review items stored before
        self._reviewed: dict[str, list[_Reviewed]] = {}
        self._admitted_here: set[str] = set()
        self._lock = threading.Lock()
        self.recognised = 0

    def visit_id(self, nonce: str) -> str | None:
        """The vault id of a visit the floor follows (by its pass nonce)."""
        return self._ids.get(nonce)

    def admit(self, claims: PassClaims, entered_at: float) -> str:
        """Store the visit of a pass the gate is about to open for, before the gate opens.

        Called by a live gate on its own thread: if the box dies before the visit is stored, the
        gate never opened; if it dies after, the restarted box knows the visit (and its pass). The
        shop floor's `visit_opened` for the same pass then finds it stored.
        """
        visit_id = self._vault.open_visit(
            entered_at=entered_at,
            party=claims.party,
            token=claims.tok,
            receipt_key=claims.rk,
            pass_nonce=claims.nonce,
            pass_expires=float(claims.exp),
        )
        with self._lock:
            self._admitted_here.add(claims.nonce)
        return visit_id

    # --- FloorListener ----------------------------------------------------------------------

    def visit_opened(self, visit: FloorVisit) -> None:
        try:
            self._opened(visit)
        except (VaultError, ValueError) as err:
            logger.error("a visit could not be stored; it will not be charged: %s", err)

    def _opened(self, visit: FloorVisit) -> None:
        claims = visit.claims
        known = self._vault.admitted_pass(visit.nonce)
        visit_id = self._vault.open_visit(
            entered_at=visit.entered,
            party=visit.party,
            token=claims.tok if claims is not None else None,
            receipt_key=claims.rk if claims is not None else None,
            pass_nonce=visit.nonce,
            pass_expires=float(claims.exp) if claims is not None else visit.entered + 600.0,
        )
        self._ids[visit.nonce] = visit_id
        self._lines_seen[visit_id] = self._review_seen[visit_id] = 0
        self._reviewed[visit_id] = []
        with self._lock:
            fresh = known is None or visit.nonce in self._admitted_here
            self._admitted_here.discard(visit.nonce)
        if fresh:
            self._lines_stored[visit_id] = 0
            self._review_stored[visit_id] = []
            return
        # A pass seen before a restart: what of its visit is stored already will come again.
        self.recognised += 1
        self._lines_stored[visit_id] = len(self._vault.cart_lines(visit_id))
        # Every item stored, whatever became of it since (withdrawn, or decided by a person): the
        # floor files them again in the same order.
        self._review_stored[visit_id] = self._vault.review_item_ids(visit_id)
        logger.info("visit %s continues after a restart (%s cart lines stored)", visit_id,
                    self._lines_stored[visit_id])

    def cart_changed(self, change: CartChange) -> None:
        visit_id = self._ids.get(change.visit)
        if visit_id is None:
            logger.error("a cart change for a visit the recorder never saw opened was not stored")
            return
        self._lines_seen[visit_id] += 1
        if self._lines_seen[visit_id] <= self._lines_stored[visit_id]:
            return
        try:
            self._vault.add_cart_line(visit_id, dataclasses.replace(change, visit=visit_id))
        except ChargeStateError:
            return  # closed before a restart: its charge is written, and this line is in it
        except (VaultError, ValueError) as err:
            logger.error("visit %s: a cart line could not be stored: %s", visit_id, err)
            return
        crash_point("cart.line_stored")

    def held_for_review(self, item: ReviewItem) -> None:
        visit_id = self._ids.get(item.visit)
        if visit_id is None:
            logger.error("a review item for a visit the recorder never saw opened was not stored")
            return
        self._review_seen[visit_id] += 1
        stored = self._review_stored[visit_id]
        if self._review_seen[visit_id] <= len(stored):
            self._reviewed[visit_id].append(_Reviewed(item, stored[self._review_seen[visit_id] - 1], True))
            return
        item_id = 0
        try:
            item_id = self._vault.add_review_item(
                visit_id, dataclasses.replace(item, visit=visit_id, reason=review_code(item.reason))
            )
        except (VaultError, ValueError) as err:
            logger.error("visit %s: a review item could not be stored: %s", visit_id, err)
        self._reviewed[visit_id].append(_Reviewed(item, item_id, False))

    def review_amended(self, item: ReviewItem, amended: ReviewItem | None) -> None:
        visit_id = self._ids.get(item.visit)
        held = self._reviewed.get(visit_id, []) if visit_id is not None else []
        k = next((k for k, r in enumerate(held) if r.item is item), None)
        if visit_id is None or k is None or not held[k].item_id:
            logger.error("units came back for a review item the recorder never stored; nothing to change")
            return
        entry = held[k]
        if amended is not None:
            held[k] = dataclasses.replace(entry, item=amended)
        try:
            if amended is None:
                self._vault.withdraw_review_item(entry.item_id)
            else:
                self._vault.amend_review_item(entry.item_id, amended.candidates)
        except ChargeStateError as err:
            # Done before a restart; or a person decided it before the units came back, and
            # should know that they did.
            level = logging.INFO if entry.before_restart else logging.WARNING
            logger.log(level, "visit %s: units came back for a review item that is no longer open: %s", visit_id, err)
        except (VaultError, ValueError) as err:
            logger.error("visit %s: a review item whose units came back could not be changed: %s", visit_id, err)

    def credited_after_exit(self, change: CartChange) -> None:
        visit_id, _left = self._closed.get(change.visit, ("", 0.0))
        if not visit_id:
            logger.error("a unit returned after its shopper left belongs to a visit the recorder never closed")
            return
        if change.grams or change.qty >= 0:
            logger.warning("visit %s: goods sold by weight came back after the exit; left to the owner", visit_id)
            return
        self.returns.append((visit_id, change.sku, -change.qty))
        self.settle_returns()

    def settle_returns(self) -> int:
        """Refund every unit returned after its exit whose charge is paid now; how many refunds were recorded."""
        if self._refund_line is None or not self.returns:
            return 0
        waiting, done = [], 0
        for visit_id, sku, units in self.returns:
            charge = self._vault.charge_for_visit(visit_id)
            if charge is None or charge.state in (PENDING, REQUIRES_ACTION):
                waiting.append((visit_id, sku, units))
                continue
            if charge.state != SUCCEEDED:
                continue  # declined or failed: nothing was taken, so nothing to give back
            try:
                self._refund_line(charge.order_ref, sku, units)
                done += 1
            except (VaultError, ValueError) as err:
                logger.error("visit %s: a unit returned after the exit could not be refunded: %s", visit_id, err)
        self.returns = waiting
        return done

    # --- exits --------------------------------------------------------------------------------

    def visit_left(self, receipt: Receipt) -> Charge | None:
        """Close the visit of a receipt and write its charge (one transaction); None if it was never opened."""
        visit_id = self._ids.pop(receipt.visit, None)
        if visit_id is None:
            logger.error("a receipt for a visit the recorder never saw opened was not charged")
            return None
        for seen in (self._lines_seen, self._lines_stored, self._review_seen, self._review_stored, self._reviewed):
            seen.pop(visit_id, None)
        cutoff = receipt.left - REFUND_WINDOW_S
        self._closed = {nonce: v for nonce, v in self._closed.items() if v[1] >= cutoff}
        self._closed[receipt.visit] = (visit_id, receipt.left)
        charge = self._vault.close_visit(
            visit_id, left_at=receipt.left, lines=receipt.lines, amount=receipt.total, currency=receipt.currency
        )
        self._on_charge(charge)
        return charge

    def close_leftovers(self, now: float) -> list[Charge]:
        """Close every visit the vault holds open that this floor does not follow, charging its stored lines.

        After a restart of a live box nobody knows where those shoppers are: each is charged for
        the cart lines stored before the restart (never for more), with `now` as the exit.
        """
        following = set(self._ids.values())
        charges = []
        for stored in self._vault.open_visits():
            if stored.id in following:
                continue
            cart = Cart(stored.id)
            for line in self._vault.cart_lines(stored.id):
                try:
                    cart.apply(CartChange(stored.id, line.sku, line.qty, line.grams, line.evidence))
                except ValueError:
                    logger.warning("visit %s: a stored cart line does not apply; left out", stored.id)
            cart.units = {sku: n for sku, n in cart.units.items() if sku in self._products}
            cart.grams = {sku: g for sku, g in cart.grams.items() if sku in self._products}
            receipt = receipt_for(cart, self._products, self._currency, float(stored.entered_at), now)
            try:
                charge = self._vault.close_visit(
                    stored.id, left_at=now, lines=receipt.lines, amount=receipt.total, currency=self._currency
                )
            except VaultError as err:
                logger.error("visit %s left open after a restart could not be closed: %s", stored.id, err)
                continue
            logger.warning("visit %s was open when the box stopped; charged for its %s stored lines", stored.id,
                           len(receipt.lines))
            self._on_charge(charge)
            charges.append(charge)
        return charges
