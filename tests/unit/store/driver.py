"""A rollout driver in its own process, for the multi-runner tests: `python -m tests.unit.store.driver
CMD URL [RUN]`, its identity from $CALLFLEET_HOLDER (as a CI runner's would be).

start: create a run (holding the rollout lock) and print its id; exit 9 naming the holder when locked.
drive: take the run's lease, print "leased", then record a step every 0.1 s (for `steps`, or forever);
a lost lease is exit 9 with the message. $DRIVER_FREEZE_AFTER=N: SIGSTOP itself after step N.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from orchestrator.rollout.journal import Journal, RolloutLocked

PLAN = {"target": "5.6.0-lab2", "waves": []}


def main(argv: list[str]) -> int:
    cmd, url = argv[0], argv[1]
    who = os.environ.get("CALLFLEET_HOLDER", "?")
    try:
        if cmd == "start":
            j = Journal(url, create=True)
            run = j.create_run(plan=PLAN, digest="d" * 64, target="5.6.0-lab2", inventory="inv.yml", policy="p.yml")
            print(run.id, flush=True)
            return 0
        j = Journal(url)
        run_id, steps = argv[2], int(argv[3]) if len(argv) > 3 else 10**9
        j.take_lease(run_id)
        print("leased", flush=True)
        freeze_after = int(os.environ.get("DRIVER_FREEZE_AFTER", "-1"))
        for i in range(steps):
            j.record(run_id, "step", data={"by": who, "i": i})
            if i == freeze_after:
                os.kill(os.getpid(), signal.SIGSTOP)  # frozen between two writes, as a paused VM would be
            time.sleep(0.1)
        j.drop_lease(run_id)
        return 0
    except RolloutLocked as exc:
        print(exc.message, file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
