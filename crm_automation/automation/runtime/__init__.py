"""The worker side: the outbox and its nudge, dispatch (decide and create runs), the engine that
executes them durably, leases, the watchdog, fairness between organizations, run history."""
