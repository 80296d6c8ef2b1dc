"""The retention schedule: runs the retention engine at start and then at a fixed interval, in the background."""

from __future__ import annotations

import logging
import threading

from appliance.vault.errors import VaultError
from appliance.vault.records import RetentionRun
from appliance.vault.vault import Vault

logger = logging.getLogger(__name__)


class RetentionSchedule:
    """A small thread: `run_retention()` now, then every `interval_s` until stopped.

    A failed run is logged and tried again at the next interval; the shop keeps working. A shorter
    interval deletes closer to each record's limit but wakes the disk more often.
    """

    def __init__(self, vault: Vault, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self._vault = vault
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = threading.Condition()
        self._runs = 0
        self.last_run: RetentionRun | None = None
        self.last_error: str = ""

    @property
    def runs(self) -> int:
        """How many runs finished (successfully or not) since start."""
        with self._done:
            return self._runs

    def start(self) -> None:
        """Start the thread; the first run begins at once."""
        if self._thread is not None:
            raise RuntimeError("the retention schedule is already running")
        self._thread = threading.Thread(target=self._loop, name="vault-retention", daemon=True)
        self._thread.start()

    def wait_for_runs(self, n: int, timeout: float) -> bool:
        """Block until at least `n` runs finished (for start-up ordering and tests); False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._runs >= n, timeout)

    def stop(self) -> None:
        """Stop after the current run (if any) and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        self._run_once()
        while not self._stop.wait(self._interval):
            self._run_once()

    def _run_once(self) -> None:
        try:
            self.last_run = self._vault.run_retention()
            self.last_error = ""
        except VaultError as err:
            self.last_error = str(err)
            logger.error("retention run failed; trying again in %.0f s: %s", self._interval, err)
        finally:
            with self._done:
                self._runs += 1
                self._done.notify_all()
