"""The soak reads memory once finished calls are freed: as soon as no host holds a SIP
transaction and shared memory has stopped falling, never after a fixed sleep; bounded."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address

from orchestrator.estate.model import EmergencyNumber, Estate, Host, Site
from orchestrator.gate.stages import MemorySample, settled_memory

HOSTS = (Host(name="cs1", site="s1", address=IPv4Address("192.0.2.1"), release="1"),
         Host(name="cs2", site="s1", address=IPv4Address("192.0.2.2"), release="1"))
ESTATE = Estate(name="settle", sites=(Site(name="s1", capacity_cps=10, weight=100, hosts=HOSTS),),
                numbers=(EmergencyNumber(number="112", label="EU", probe_route="9112", psap_uri="sip:192.0.2.250"),))


class Script:
    """Samples of both hosts from a script: (shared memory, transactions) per poll."""

    def __init__(self, script: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> None:
        self.polls: Iterator[tuple[tuple[int, int], tuple[int, int]]] = iter(script)
        self.taken = 0
        self.last = script[-1]

    def sample(self, estate: Estate, hosts: Sequence[Host]) -> list[MemorySample]:
        self.taken += 1
        row = next(self.polls, self.last)
        return [MemorySample(host=h.name, t=0.0, shm_real_used=shm, rss_kb=1, transactions=tx)
                for h, (shm, tx) in zip(hosts, row, strict=True)]


def test_memory_is_read_once_the_transactions_are_freed_and_memory_stopped_falling() -> None:
    # cs2 still frees transactions for three polls; then its memory falls once, then holds
    rig = Script([((100, 0), (900_000, 40)), ((100, 0), (800_000, 30)), ((100, 0), (700_000, 10)),
                  ((100, 0), (300_000, 0)), ((100, 0), (300_000, 0)), ((100, 0), (100_000, 0))])
    slept: list[float] = []
    out = settled_memory(ESTATE, HOSTS, settle_s=6, sleep=slept.append, sample=rig.sample)
    assert [s.shm_real_used for s in out] == [100, 300_000] and rig.taken == 5
    assert sum(slept) == 1.0  # four polls of 0.25 s, not the 6 s of settle_s


def test_a_leak_is_not_a_transaction_it_settles_at_once() -> None:
    rig = Script([((5000, 0), (5000, 0))])
    out = settled_memory(ESTATE, HOSTS, settle_s=6, sleep=lambda s: None, sample=rig.sample)
    assert rig.taken == 2 and [s.shm_real_used for s in out] == [5000, 5000]


def test_a_host_that_never_frees_its_transactions_is_read_at_the_bound() -> None:
    rig = Script([((100, 3), (100, 0))])
    slept: list[float] = []
    settled_memory(ESTATE, HOSTS, settle_s=1.0, max_extra_s=2.0, sleep=slept.append, sample=rig.sample)
    assert sum(slept) == 3.0 and rig.taken == 13
