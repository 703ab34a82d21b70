"""Where task code runs: the executor contract (thread, process, ray) and each executor's own."""
