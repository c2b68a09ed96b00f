"""Release variants built from the stock release (a copy with one change): the faulty
releases the demo, the tests and the benchmarks roll out, each standing for a real
incident kind (see docs/RELEASES.md)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from orchestrator.lab.control import stock_release_source
from orchestrator.release.bundle import build_bundle

STOCK = stock_release_source()


def make_release(store: Path, version: str, mutate: Callable[[Path], None] | None = None) -> Path:
    """Copy the stock source, apply `mutate` to the copy, build `callserver-<version>` in `store`."""
    src = store / "src" / version
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(STOCK, src)
    if mutate is not None:
        mutate(src)
    return build_bundle(source=src, version=version, out_dir=store)


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact snippet (fails loudly if the stock release changed)."""
    text = path.read_text()
    if old not in text:
        raise ValueError(f"{old!r} not in {path}: the stock release changed under this variant")
    path.write_text(text.replace(old, new, 1))


def syntax_error(src: Path) -> None:
    """A config `kamailio -c` rejects."""
    edit(src / "routing.cfg", "route[EMERGENCY] {", "route[EMERGENCY] {\n\tthis is not kamailio;")


def dies_at_start(src: Path) -> None:
    """Passes `kamailio -c`, dies at module init: a dispatcher list file that does not exist."""
    edit(src / "kamailio.cfg", 'loadmodule "counters.so"\n',
         'loadmodule "counters.so"\nloadmodule "dispatcher.so"\n'
         'modparam("dispatcher", "list_file", "/nonexistent/callfleet/dispatcher.list")\n')


def breaks_after_reconnect(src: Path) -> None:
    """The 2021 kind: fine until the routine PSAP-trunk reconnection, then every call fails."""
    edit(src / "kamailio.cfg", '\t\t$shv(trunk_generation) = $sel(cfg_get.callfleet.trunk_generation);\n',
         '\t\t$shv(trunk_generation) = $sel(cfg_get.callfleet.trunk_generation);\n'
         '\t\t$shv(trunks_broken) = 1;\n')
    edit(src / "routing.cfg", "route[EMERGENCY] {\n",
         'route[EMERGENCY] {\n\tif ($shv(trunks_broken) == 1) {\n'
         '\t\tsl_send_reply("503", "Trunk unavailable");\n\t\texit;\n\t}\n')


def breaks_number(number: str) -> Callable[[Path], None]:
    """One emergency route broken (the Optus kind): that number gets 503, the others work."""
    def mutate(src: Path) -> None:
        edit(src / "routing.cfg", f'\t\tcase "{number}":\n',
             f'\t\tcase "{number}":\n\t\t\tsl_send_reply("503", "Route unavailable");\n\t\t\texit;\n')
    return mutate


def random_503(percent: int) -> Callable[[Path], None]:
    """A few percent of calls answered 503 at random."""
    def mutate(src: Path) -> None:
        edit(src / "routing.cfg", "route[EMERGENCY] {\n",
             f'route[EMERGENCY] {{\n\tif ($RANDOM mod 100 < {percent}) {{\n'
             '\t\tsl_send_reply("503", "Overloaded");\n\t\texit;\n\t}\n')
    return mutate


def added_delay(ms: int) -> Callable[[Path], None]:
    """Every call set up `ms` later (asynchronously: workers are not blocked), none failed."""
    def mutate(src: Path) -> None:
        edit(src / "kamailio.cfg", 'loadmodule "counters.so"\n',
             'loadmodule "counters.so"\nloadmodule "async.so"\nasync_workers=4\n'
             'modparam("async", "ms_timer", 10)\n')
        edit(src / "routing.cfg", "route[EMERGENCY] {\n", f"route[EMERGENCY] {{\n\tasync_ms_sleep({ms});\n")
    return mutate


def leaks_memory(src: Path) -> None:
    """Every call leaves an entry in a table nobody empties: shared memory grows per call."""
    edit(src / "kamailio.cfg", 'loadmodule "counters.so"\n',
         'loadmodule "counters.so"\nloadmodule "htable.so"\n'
         'modparam("htable", "htable", "calls=>size=8;")\n')
    edit(src / "routing.cfg", "route[EMERGENCY] {\n",
         'route[EMERGENCY] {\n\t$sht(calls=>$ci) = "callfleet lab leak: a call record never freed";\n')


def counter_cap(calls: int) -> Callable[[Path], None]:
    """The Intrado kind: a counter with a cap; calls fail once it is reached."""
    def mutate(src: Path) -> None:
        edit(src / "kamailio.cfg", 'modparam("pv", "shvset", "trunk_generation=i:0")\n',
             'modparam("pv", "shvset", "trunk_generation=i:0")\nmodparam("pv", "shvset", "calls=i:0")\n')
        edit(src / "routing.cfg", "route[EMERGENCY] {\n",
             f'route[EMERGENCY] {{\n\t$shv(calls) = $shv(calls) + 1;\n\tif ($shv(calls) > {calls}) {{\n'
             '\t\tsl_send_reply("500", "Counter exhausted");\n\t\texit;\n\t}\n')
    return mutate


def rejects_after(seconds: int) -> Callable[[Path], None]:
    """The AT&T 2024 kind: a node that works after the change, then rejects every call (503)
    once its process has run `seconds` (`$TS - $Tb`: now minus Kamailio's start time).
    A short gate passes it; only a soak or bake longer than `seconds` sees it."""
    def mutate(src: Path) -> None:
        edit(src / "routing.cfg", "route[EMERGENCY] {\n",
             f'route[EMERGENCY] {{\n\tif ($TS - $Tb >= {seconds}) {{\n'
             '\t\tsl_send_reply("503", "Protect mode");\n\t\texit;\n\t}\n')
    return mutate


def exhausts_memory_after_reconnect(kb_per_call: int = 160) -> Callable[[Path], None]:
    """The 2021 kind, closer to the state report: fine until the routine PSAP-trunk reconnection;
    from then on every call leaves about `kb_per_call` KB of shared memory behind (4.5 KB
    entries in a table nobody empties), so with the lab's 64 MB of shared memory (`-m 64`) the call
    server runs out after a few hundred calls and calls fail from then on."""
    entries = max(1, kb_per_call // 4)
    def mutate(src: Path) -> None:
        edit(src / "kamailio.cfg", 'loadmodule "counters.so"\n',
             'loadmodule "counters.so"\nloadmodule "htable.so"\n'
             'modparam("htable", "htable", "trunkcache=>size=10;")\n')
        edit(src / "kamailio.cfg", '\t\t$shv(trunk_generation) = $sel(cfg_get.callfleet.trunk_generation);\n',
             '\t\t$shv(trunk_generation) = $sel(cfg_get.callfleet.trunk_generation);\n'
             '\t\t$shv(trunks_reconnected) = 1;\n')
        edit(src / "routing.cfg", "route[EMERGENCY] {\n",
             'route[EMERGENCY] {\n\tif ($shv(trunks_reconnected) == 1) {\n'
             '\t\t$var(blk) = "callfleet lab 2021 replay: trunk state copied per call, never freed. ";\n'
             '\t\t$var(i) = 0;\n\t\twhile ($var(i) < 6) {\n'
             '\t\t\t$var(blk) = $var(blk) + $var(blk);\n\t\t\t$var(i) = $var(i) + 1;\n\t\t}\n'
             f'\t\t$var(i) = 0;\n\t\twhile ($var(i) < {entries}) {{\n'
             '\t\t\t$sht(trunkcache=>$ci:$var(i)) = $var(blk);\n\t\t\t$var(i) = $var(i) + 1;\n\t\t}\n'
             '\t}\n')
    return mutate
