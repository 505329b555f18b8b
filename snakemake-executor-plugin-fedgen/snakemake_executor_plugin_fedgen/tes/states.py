"""TES 1.1 task states and the sets derived from them, defined once for node and executor.

The eleven states of ``tesState`` fall into three groups:

* :data:`LIVE_STATES`: the task may still complete (``UNKNOWN`` counts: a server that does not
  know yet has not failed). The executor reattaches to such a task after a coordinator crash.
* :data:`FINAL_STATES`: the task will not change any more; :data:`FAILED_STATES` are the final
  states other than ``COMPLETE``.
* ``CANCELING``: neither; the task was canceled and is being cleaned up, it will end
  ``CANCELED``.

:data:`ENDED_BADLY` (failed or being canceled) are the tasks that never count as an earlier
attempt of the same job.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class TesState(StrEnum):
    """``tesState``: the task state as defined by the server (TES 1.1)."""

    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"
    CANCELING = "CANCELING"


#: Every state, in the order of the specification.
STATES: Final[tuple[TesState, ...]] = tuple(TesState)

#: The task may still run to completion.
LIVE_STATES: Final = frozenset(
    {
        TesState.UNKNOWN,
        TesState.QUEUED,
        TesState.INITIALIZING,
        TesState.RUNNING,
        TesState.PAUSED,
    }
)

#: Final states other than COMPLETE.
FAILED_STATES: Final = frozenset(
    {
        TesState.EXECUTOR_ERROR,
        TesState.SYSTEM_ERROR,
        TesState.CANCELED,
        TesState.PREEMPTED,
    }
)

#: The task will not change any more.
FINAL_STATES: Final = FAILED_STATES | {TesState.COMPLETE}

#: Failed, or canceled and being cleaned up: not a usable attempt of a job.
ENDED_BADLY: Final = FAILED_STATES | {TesState.CANCELING}

assert LIVE_STATES | FINAL_STATES | {TesState.CANCELING} == set(TesState)
assert not LIVE_STATES & FINAL_STATES
