"""Adapters and shared pieces for `bench/peers.py`: one `System` subclass per task system.

Peers are imported inside their adapter's `start()`, so a missing package only
makes its row say "not installed".
"""

from .base import (
    ALL_WORKLOADS,
    PROGRESS_STEPS,
    FlakyError,
    Kind,
    Probe,
    System,
    Workload,
    is_flaky,
)
from .registry import BASELINE, build_systems

__all__ = [
    "ALL_WORKLOADS",
    "BASELINE",
    "PROGRESS_STEPS",
    "FlakyError",
    "Kind",
    "Probe",
    "System",
    "Workload",
    "build_systems",
    "is_flaky",
]
