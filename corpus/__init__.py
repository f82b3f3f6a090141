"""The corpus read back out of the stores: training exports for other platforms, and optimisation reports."""
