"""Host-side training path, run from a checkout (`python -m training ...`); not installed."""
