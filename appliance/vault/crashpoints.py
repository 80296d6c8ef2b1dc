"""Named crash points: where the crash tests (and `appliance bench crash`) kill the process with SIGKILL.

Each point sits between two durable steps whose order matters (a key stored before its file, a
token stored before its visit, a keyring renamed before the old one is removed). With
WALKOUT_CRASH_AT naming a point, the process kills itself there, exactly as a power cut would;
otherwise a point costs one dictionary lookup. WALKOUT_CRASH_AFTER=n lets the point pass n times
first, so a harness can aim at the n-th charge instead of always the first.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "WALKOUT_CRASH_AT"
CRASH_AFTER_ENV = "WALKOUT_CRASH_AFTER"

POINTS = (
    "visit.token_stored",
    "visit.closed",
    "token.deleted",
    "key.created",
    "key.destroyed",
    "retention.chunk",
    "keyring.built",
    "keyring.installed",
    "rotation.staged",
    "rotation.rewrapped",
)

ADMISSION_POINTS = ("visit.pass_stored",)
"""Points of a visit opened with its pass recorded (`Vault.open_visit(pass_nonce=...)`)."""

# How often each point was passed in this process. A process-wide count is what a kill switch
# reached from deep inside the vault needs; it is touched only when WALKOUT_CRASH_AT names a point.
_passed: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here by SIGKILL if WALKOUT_CRASH_AT names this point (after WALKOUT_CRASH_AFTER passes)."""
    if os.environ.get(CRASH_ENV) != name:
        return
    passed = _passed.get(name, 0)
    _passed[name] = passed + 1
    if passed >= int(os.environ.get(CRASH_AFTER_ENV, "0") or 0):
        os.kill(os.getpid(), signal.SIGKILL)
