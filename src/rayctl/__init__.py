"""rayctl: launch and cost-optimize Ray workloads on GPU clouds."""

__version__ = "0.1.0"
