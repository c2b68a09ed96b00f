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
