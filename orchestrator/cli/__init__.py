"""The `callfleet` command line: the only layer that maps errors to exit codes."""
