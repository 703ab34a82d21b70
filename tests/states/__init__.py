"""The task state machine: a model-based stateful test and the regressions it found."""
