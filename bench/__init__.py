"""The call-capacity benchmark: `python -m bench.calls --help`."""
