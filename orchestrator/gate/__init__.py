"""The health gate: may this release meet live emergency calls? PASS, FAIL or INCONCLUSIVE."""
