"""A unit handed to a stranger and put back: the credit goes to the cart of the one who handed it."""

from __future__ import annotations

from shopkit import T0, Script

A, B, C = "AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB", "CCCCCCCCCCCCCCCCCCCCCC"


def _two_colas_and_a_stranger(stranger_waits_at: tuple[float, float]) -> dict[str, dict[str, int]]:
    """A takes a cola from p1 and B one from p2 (B takes his after A has gone to x = 4). The stranger
    C, on a pass of their own, waits at `stranger_waits_at` while A stands at (4.0, 2.0), then puts a
    cola back on p1; nobody who holds one is near the shelf then. Everyone stays inside till after."""
    s = Script.shop()
    s.enter(A, T0 + 1, track="tA")
    s.walk("tA", [(T0 + 1, 1.0, 0.3), (T0 + 6, 1.05, 3.45), (T0 + 10, 1.05, 3.45), (T0 + 14, 4.0, 2.0),
                  (T0 + 20, 4.0, 2.0), (T0 + 22, 4.8, 1.0), (T0 + 42, 4.8, 1.0), (T0 + 44, 2.5, 0.2),
                  (T0 + 45, 2.5, -0.5)])
    s.change("g1.s1.p1", T0 + 8, -521.0)
    s.enter(B, T0 + 2, track="tB")
    s.walk("tB", [(T0 + 2, 1.0, 0.3), (T0 + 12, 1.15, 3.45), (T0 + 15, 1.15, 3.45), (T0 + 19, 5.0, 3.0),
                  (T0 + 46, 5.0, 3.0), (T0 + 49, 2.5, 0.2), (T0 + 50, 2.5, -0.5)])
    s.change("g1.s1.p2", T0 + 13.5, -521.0)
    wx, wy = stranger_waits_at
    s.enter(C, T0 + 3, track="tC")
    s.walk("tC", [(T0 + 3, 1.0, 0.3), (T0 + 12, wx, wy), (T0 + 20, wx, wy), (T0 + 26, 1.05, 3.45),
                  (T0 + 30, 1.05, 3.45), (T0 + 35, 2.5, 0.2), (T0 + 36, 2.5, -0.5)])
    s.change("g1.s1.p1", T0 + 28, 521.0)
    s.leave(T0 + 35.5, "tC")
    s.leave(T0 + 44.5, "tA")
    s.leave(T0 + 49.5, "tB")
    _, charged = s.run(T0, T0 + 60)
    return charged


def test_the_cart_whose_shopper_stood_with_the_stranger_is_credited():
    """C stood 0.45 m from A (handing over); B was never nearer C than passers-by: A's cola came back."""
    charged = _two_colas_and_a_stranger((4.0, 1.55))
    assert charged[A] == {}
    assert charged[B] == {"cola": 1}
    assert charged[C] == {}


def test_with_no_holder_met_the_credit_goes_to_nobody():
    """C stood apart from everyone: which of the two colas came back is unknown, so nobody is
    credited (as before), and C is not charged for putting a thing down."""
    charged = _two_colas_and_a_stranger((3.0, 1.0))
    assert charged[A] == {"cola": 1}
    assert charged[B] == {"cola": 1}
    assert charged[C] == {}
