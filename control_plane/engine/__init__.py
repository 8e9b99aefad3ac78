"""The running control plane: the controller (source -> IR -> snapshot), the policy watcher,
the readiness prober and the supervision of long-running tasks."""
