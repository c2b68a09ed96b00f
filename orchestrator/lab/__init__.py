"""The lab: a faithful six-site estate of real Kamailio call servers on loopback."""
