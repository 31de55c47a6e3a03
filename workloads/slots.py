"""Per-slot generator state: unique values per process, bounded by the concurrency.

The runner (chaos.workload) gives logical process slot s the ids s, s + concurrency, ...: a
retired process is replaced by the next id of its slot. Keeping generator state per slot rather
than per process id keeps it bounded by the concurrency however many processes an hour of
faults retires, and lets a slot's own sequence (the set workload's key rotation) go on across
retirements.
"""
from __future__ import annotations

from dataclasses import dataclass

#: values per process before they would collide with the next process's range
VALUES_PER_PROCESS = 1_000_000


@dataclass
class SlotState:
    """process: the slot's current process; values: unique values it used; total: values the
    slot used over all its processes."""

    process: int
    values: int = 0
    total: int = 0

    def next_value(self) -> int:
        """The current process's next unique value: process * VALUES_PER_PROCESS + n."""
        n = self.values
        if n >= VALUES_PER_PROCESS:
            raise RuntimeError(f"process {self.process} used {n} values; unique range "
                               f"exhausted")
        self.values += 1
        self.total += 1
        return self.process * VALUES_PER_PROCESS + n


class SlotStates:
    """The SlotState of each slot (callers serialise access with their own lock)."""

    def __init__(self) -> None:
        self._states: dict[int, SlotState] = {}

    def __len__(self) -> int:
        return len(self._states)

    def get(self, process: int, slots: int) -> SlotState:
        """The state of `process`'s slot (process % slots); a new process continues the slot.

        Ids of one slot only grow (a retired id never comes back), so an older id than the
        slot's current one means `slots` is not the run's concurrency: values would repeat.
        """
        slot = process % max(1, slots)
        state = self._states.get(slot)
        if state is None:
            state = self._states[slot] = SlotState(process)
        elif state.process != process:
            if process < state.process:
                raise RuntimeError(f"process {process} after {state.process} in slot {slot}: "
                                   f"slots={slots} is not the run's concurrency")
            state.process, state.values = process, 0
        return state
