"""Synthetic emergency calls: run them (SIPp) and judge them (RFC 6076 metrics)."""
