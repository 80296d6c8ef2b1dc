"""Fusion: which visit took which product, carts, returns, the review queue and the shop-floor loop."""
