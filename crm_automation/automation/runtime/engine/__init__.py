"""Worker step 2: execute runs, many at once, durably, idempotently and in isolation.

- runs.py: which runs go together; per group the loop of segments (one transaction each),
  commits and deliveries, taking turns between organizations; one segment (load, lock, walk,
  write the step rows); park, pause, finish.
- walk.py: a run being walked (`RunState`, where its work is) and the graph walk (read back,
  flow nodes inline, error policies, halts, merges, loops; a segment's walk of all its runs,
  `step_all`); tool-call steps run together by
  kind with bulk writes, effects reused by key, external effects delivered after the commit.
- simulate.py: the same walk without effects, for Simulate.
"""

from crm_automation.automation.runtime.engine.runs import (
    MAX_ATTEMPTS,
    SEGMENT_SECONDS,
    Report,
    execute_leased,
    execute_runs,
    final_status,
    plan,
    wake_parents,
)
from crm_automation.automation.runtime.engine.simulate import walk_without_effects
from crm_automation.automation.runtime.engine.walk import MAX_STEPS, SEGMENT_ROWS, RunState, StepRow

__all__ = ["MAX_ATTEMPTS", "MAX_STEPS", "SEGMENT_ROWS", "SEGMENT_SECONDS", "Report", "RunState", "StepRow",
           "execute_leased", "execute_runs", "final_status", "plan", "wake_parents", "walk_without_effects"]
