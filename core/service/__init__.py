"""The service's plumbing: database and tables, the job state machine, projects and tokens,
scoping, leases, heartbeats, dispatch to the queue, log lines, stages, health and
stopping child processes."""
