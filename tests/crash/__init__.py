"""Crash tests: services SIGKILLed in subprocesses at random points, checked after restart."""
