"""Keeping a deployment healthy: health checks, KPIs, metrics, alerts, the circuit breaker,
retention."""
