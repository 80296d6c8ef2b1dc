"""Named crash points: where the crash tests (and `appliance bench crash`) kill the process with SIGKILL.

Each point sits between two durable steps whose order matters (a key stored before its file, a
token stored before its visit, a keyring renamed before the old one is removed). With
WALKOUT_CRASH_AT naming a point, the process kills itself there, exactly as a power cut would;
otherwise a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "WALKOUT_CRASH_AT"

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


def crash_point(name: str) -> None:
    """Die here by SIGKILL if WALKOUT_CRASH_AT names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
