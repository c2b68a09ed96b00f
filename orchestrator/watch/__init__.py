"""`callfleet watch`: continuous supervision of emergency-call routing (docs/WATCH.md).

A pure decision core (`assess`, `incidents`, `actions`, `alerts`: facts in, decisions out,
unit-tested on an injected clock) inside one impure loop (`supervisor`) whose eyes are
`observe` (SIPp probes, live metrics, releases) and whose memory is `journal` (SQLite).
"""
