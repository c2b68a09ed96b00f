"""Alert latency: from a failed gate's verdict to the last delivery on every channel (issue #7).

A faulty release (the 2021 kind: every emergency call refused after the PSAP-trunk
reconnection command) is rolled out with callfleet on the lab, with an alert config whose
three channels point at real servers on loopback: an HTTP receiver (webhook, Slack payload),
aiosmtpd (e-mail, authenticated) and an SMSC speaking SMPP (two numbers, transmitter bind).
The canary's drill fails, callfleet rolls the canary back and halts; the "gate_failed" alert
is handed to the notifier at the verdict, in the background, while the rollback runs.

Per run: the verdict time (the journal's gate event), when each channel's server received the
alert (server side clocks, same machine) and when the notifier recorded it sent (the alert
store), and the rollback's own duration, to show the alert did not wait for it.

Own lab on 198.18.94 (state in a temporary directory), taken down at the end. Figures go to
benchmarks/results/alert_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.blast_radius import FAULTY, Lab, LabFlake, bench_policy, own_lab, run_scenarios
from benchmarks.common import callfleet, write
from orchestrator.alerting.store import AlertStore
from orchestrator.lab import variants
from orchestrator.rollout.journal import Journal
from tests.integration_alerting.conftest import SECRETS, SMPP_PASSWORD, SMTP_PASSWORD, config_doc
from tests.integration_alerting.servers import HttpReceiver, SmppServer, SmtpServer

BASE = "198.18.94"


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # through the `finally` that takes the lab down


def one_run(lab: Lab, n: int) -> dict[str, Any]:
    """One faulty rollout halted at the canary; latencies of its gate_failed alert."""
    work = lab.state / f"run{n}"
    work.mkdir()
    journal = work / "journal.sqlite"
    http, smtp, smsc = HttpReceiver(), SmtpServer(user="callfleet", password=SMTP_PASSWORD), \
        SmppServer(password=SMPP_PASSWORD)
    # Server clocks are time.monotonic() (one clock per machine on Linux); the journal's is wall time.
    offset = time.time() - time.monotonic()
    try:
        alerts = work / "alerts.yml"
        alerts.write_text(yaml.safe_dump(config_doc(http_port=http.port, smtp_port=smtp.port, smpp_port=smsc.port,
                                                    store=work / "alerts.sqlite")))
        os.environ.update({"CALLFLEET_ALERTS": str(alerts), **SECRETS})
        lab.traffic_start()  # the public keeps calling, as in production
        proc = callfleet("upgrade", "--to", FAULTY, "--yes", "--json", "--store", str(lab.store), "--policy",
                         str(bench_policy(work / "policy.yml")), "--journal", str(journal), "-i", str(lab.inventory),
                         timeout=1800)
    finally:
        public = lab.traffic_stop()
        http.close()
        smtp.close()
        smsc.close()
    out = json.loads(proc.stdout)
    events = Journal(journal).events(out["run"])
    gate = next((e for e in events if e.kind == "gate"), None)
    if gate is None:
        raise LabFlake(f"halted before the gate: {out.get('message')}")
    restored = next(e.ts for e in events if e.kind == "after" and e.data.get("effect") == "restore traffic")
    deliveries = [d for d in AlertStore(path=work / "alerts.sqlite").deliveries()
                  if d.dedupe_key.endswith(":gate_failed")]
    sent = {d.channel: d.updated_at.timestamp() - gate.ts
            for d in deliveries if d.state.value in ("sent", "acknowledged")}
    # Server side: the first thing each server received is the gate_failed alert (the rollback's
    # comes only after the rollback); SMS: the last part to the last number of that alert.
    first_rb = min((d.created_at.timestamp() for d in AlertStore(path=work / "alerts.sqlite").deliveries()
                    if d.dedupe_key.endswith(":rolled_back")), default=float("inf"))
    received = {
        "webhook": min((h.at for h in http.hits), default=None),
        "smtp": min((at for _, _, at in smtp.messages), default=None),
        "smpp": max((s.at for s in smsc.state.submits if s.at + offset < first_rb), default=None),
    }
    recv_s = {k: round(v + offset - gate.ts, 3) for k, v in received.items() if v is not None}
    return {"run": n, "exit code": proc.returncode, "verdict": gate.data["verdict"],
            "webhook s": recv_s.get("webhook"), "smtp s": recv_s.get("smtp"), "smpp s": recv_s.get("smpp"),
            "last delivery s": max(recv_s.values()) if len(recv_s) == 3 else None,
            "recorded sent s": round(max(sent.values()), 3) if len(sent) == 3 else None,
            "channels sent": len(sent), "rollback s": round(restored - gate.ts, 1),
            "public calls lost": public["failed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="faulty rollouts to measure (default 3)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    lab = own_lab("cfalert-", BASE)
    if lab is None:
        return 4
    try:
        variants.make_release(lab.store, FAULTY, variants.breaks_after_reconnect)
        rows = run_scenarios(lab, [functools.partial(one_run, lab, n) for n in range(1, args.runs + 1)], attempts=2)
    finally:
        callfleet("lab", "down", *lab.sd)
    lasts = [r["last delivery s"] for r in rows if r["last delivery s"] is not None]
    summary = {"run": "median", "last delivery s": round(statistics.median(lasts), 3) if lasts else None}
    write("alert_latency",
          params={"faulty release": "breaks after the reconnection command (2021 kind)", "runs": args.runs,
                  "channels": "webhook (slack), smtp (aiosmtpd, AUTH), smpp (2 numbers, transmitter)",
                  "retry": "attempts 3, timeout 2 s", "policy": "policies/default.yml with SLOW_MACHINE"},
          rows=[*rows, summary],
          columns=["run", "verdict", "webhook s", "smtp s", "smpp s", "last delivery s", "recorded sent s",
                   "rollback s", "public calls lost"],
          title="Alert latency: failed gate verdict to the last delivery",
          notes="Seconds after the canary's gate verdict (journal): *webhook/smtp/smpp s*, when each loopback server "
                "received the gate_failed alert (SMS: its last part to the last of two numbers); *recorded sent s*, "
                "when the notifier's store marked the last channel sent; *rollback s*, from the verdict to the "
                "canary's traffic restored. The alert is sent while the rollback runs, never after it.")
    return 0 if len(lasts) == args.runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
