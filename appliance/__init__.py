"""Walk-out shop in a box: shelf weights, shopper tracks and entry passes in; exact receipts out."""

__version__ = "0.1.0"
