"""The runtime: runs, retries, subtasks, cancellation, recovery, triggers, messages, limits."""
