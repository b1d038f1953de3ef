"""The active-time clock: seconds a person spent on each instance, idle pauses capped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["IDLE_CAP_S", "ActiveTimeClock", "person_timed"]

IDLE_CAP_S = 60.0
"""Longer pauses between two actions on one instance are not counted as active time."""


class ActiveTimeClock:
    """Books the time between actions on the instance they concern.

    Time spent prompting an object accrues until the object is committed (or the prompt is
    cleared); every action then books the accrued time plus the time since the previous
    action, each pause capped at :data:`IDLE_CAP_S`.

    Parameters
    ----------
    clock : callable
        Seconds as a float (``time.monotonic``); injectable for tests.
    idle_cap_s : float
        The longest pause counted.
    """

    def __init__(self, clock: Callable[[], float], idle_cap_s: float = IDLE_CAP_S) -> None:
        self.clock = clock
        self.idle_cap_s = idle_cap_s
        self._last_action: float | None = None
        self._pending_s = 0.0

    def since_last_action(self) -> float:
        """Seconds since the previous action (capped); marks now as the last action."""
        now = self.clock()
        elapsed = 0.0 if self._last_action is None else min(now - self._last_action, self.idle_cap_s)
        self._last_action = now
        return max(float(elapsed), 0.0)

    def accrue(self) -> None:
        """An action on an unfinished object (a prompt): keep its time for the commit."""
        self._pending_s += self.since_last_action()

    def book(self) -> float:
        """Active seconds to book on the instance of the current action."""
        spent = self._pending_s + self.since_last_action()
        self._pending_s = 0.0
        return spent

    def drop_pending(self) -> None:
        """Forget the time of an unfinished object (its prompt was cleared)."""
        self._pending_s = 0.0


def person_timed(review: Any, time_s: Any) -> NDArray[np.bool_]:
    """Which instances count in throughput and time per instance: those a person made or
    reviewed, with active time booked.

    A pre-label not yet reviewed (``review`` = ``pre-label``) is left out whatever its
    ``time_s``: a batch or automatic run commits many masks within milliseconds, and that is
    machine time, not a person's (counting it gave "66071923.3 instances per hour"). Once
    reviewed (accepted, corrected, rejected) it counts with the time booked on it. Rows
    without a time (0, NaN, missing: an imported file) are left out too.

    Parameters
    ----------
    review : array-like of str
        The ``review`` state of each instance.
    time_s : array-like of float
        Active seconds of each instance (NaN / None: none).

    Returns
    -------
    numpy.ndarray of bool
        One flag per instance.
    """
    states = np.asarray(review, dtype=object)
    seconds = np.asarray([np.nan if v is None else v for v in np.asarray(time_s, dtype=object).tolist()], float)
    with np.errstate(invalid="ignore"):
        timed = np.isfinite(seconds) & (seconds > 0)
    mask: NDArray[np.bool_] = timed & (states != "pre-label")
    return mask
