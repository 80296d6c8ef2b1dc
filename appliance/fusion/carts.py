"""Carts: what each visit holds, with the evidence for every line, and how it becomes a receipt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from appliance.config import Product
from appliance.events import CartChange, Receipt, ReceiptLine, ReviewItem


@dataclass(slots=True)
class Cart:
    """One visit's cart: units per sku, grams per by-weight sku, and the changes that made them."""

    visit: str
    units: dict[str, int] = field(default_factory=dict)
    grams: dict[str, float] = field(default_factory=dict)
    changes: list[CartChange] = field(default_factory=list)
    review: list[ReviewItem] = field(default_factory=list)

    def apply(self, change: CartChange) -> None:
        if change.qty:
            left = self.units.get(change.sku, 0) + change.qty
            if left < 0:
                raise ValueError(f"cart {self.visit} would hold {left} of {change.sku}")
            self.units[change.sku] = left
        if change.grams:
            self.grams[change.sku] = max(0.0, self.grams.get(change.sku, 0.0) + change.grams)
        self.changes.append(change)

    def amend_review(self, item: ReviewItem, amended: ReviewItem | None) -> None:
        """Replace one of the cart's review items (this very one, not an equal one) with `amended`, or
        withdraw it when None: its units came back to a shelf while it waited for a person."""
        k = next((k for k, held in enumerate(self.review) if held is item), None)
        if k is None:
            raise ValueError(f"cart {self.visit} holds no such review item")
        if amended is None:
            del self.review[k]
        else:
            self.review[k] = amended

    def holds(self, sku: str) -> int:
        return self.units.get(sku, 0)

    def held_skus(self) -> list[str]:
        return [s for s, n in self.units.items() if n > 0] + [s for s, g in self.grams.items() if g > 0]


def line_amount(product: Product, qty: int, grams: float) -> int:
    """Price of a line in minor units; by-weight lines are priced per kg and rounded half up."""
    if product.by_weight:
        return int(product.price * grams / 1000.0 + 0.5)
    return product.price * qty


def receipt_for(cart: Cart, products: Mapping[str, Product], currency: str, entered: float,
                left: float) -> Receipt:
    """The receipt the box would charge on its own: cart lines, sorted by sku; review items beside."""
    lines: list[ReceiptLine] = []
    for sku in sorted(set(cart.units) | set(cart.grams)):
        p = products[sku]
        qty = cart.units.get(sku, 0)
        grams = round(cart.grams.get(sku, 0.0), 1)
        if p.by_weight and grams > 0:
            lines.append(ReceiptLine(sku, p.name, 0, grams, line_amount(p, 0, grams)))
        elif qty > 0:
            lines.append(ReceiptLine(sku, p.name, qty, 0.0, line_amount(p, qty, 0.0)))
    return Receipt(cart.visit, entered, left, currency, tuple(lines), tuple(cart.review))
