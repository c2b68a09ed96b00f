"""Site verdicts over the window, table-driven: probe and live figures in, status and reasons out."""

from __future__ import annotations

import pytest

from orchestrator.policy.watch import WatchPolicy
from orchestrator.watch.assess import MAX_SAMPLES_PER_KEY, assess_site, number_figures, window
from orchestrator.watch.model import LiveSample, ProbeSample
from tests.unit.watch.helpers import NUMBERS, POLICY, T0, live, sample, site_probes


def judge(samples: list[ProbeSample], live_sample: LiveSample | None = None, policy: WatchPolicy = POLICY):  # type: ignore[no-untyped-def]
    return assess_site(site="site3", numbers=NUMBERS, samples=samples, live=live_sample, policy=policy)


CASES = [
    # (name, samples, live, status, failing numbers, reason codes)
    ("healthy", site_probes("site3", at=T0), live("site3", at=T0), "ok", (), ()),
    ("healthy, no live data (a drained site)", site_probes("site3", at=T0), None, "ok", (), ()),
    ("one host down fails every number", site_probes("site3", at=T0, bad_hosts=[2]), None, "fail", NUMBERS,
     tuple(f"ser:{n}" for n in NUMBERS)),
    ("one number broken on both hosts", site_probes("site3", at=T0, bad_hosts=[1, 2], bad_numbers=["17"]), None,
     "fail", ("17",), ("ser:17",)),
    ("slow setup", site_probes("site3", at=T0, delay_ms=1500), None, "fail", NUMBERS,
     tuple(f"srd:{n}" for n in NUMBERS)),
    ("live ASR low", site_probes("site3", at=T0), live("site3", at=T0, attempts=60, answered=30), "fail", (),
     ("live_asr",)),
    ("live setup delay high", site_probes("site3", at=T0), live("site3", at=T0, srd_p95_ms=4000), "fail", (),
     ("live_srd",)),
    ("live ASR low but too few live calls: not judged", site_probes("site3", at=T0),
     live("site3", at=T0, attempts=10, answered=2), "ok", (), ()),
    ("too few probe calls: unknown", [sample("site3", n, at=T0, calls=4) for n in NUMBERS], None, "unknown", (), ()),
    ("too few calls but live failing: fail", [sample("site3", n, at=T0, calls=4) for n in NUMBERS],
     live("site3", at=T0, answered=0), "fail", (), ("live_asr",)),
    ("a number never probed: unknown", [p for p in site_probes("site3", at=T0) if p.number != "112"], None,
     "unknown", (), ()),
    ("other sites' samples are ignored", site_probes("site3", at=T0) + site_probes("site4", at=T0, bad_hosts=[1]),
     None, "ok", (), ()),
]


@pytest.mark.parametrize(("name", "samples", "live_sample", "status", "numbers", "codes"), CASES,
                         ids=[c[0] for c in CASES])
def test_site_verdict(name: str, samples: list[ProbeSample], live_sample: LiveSample | None, status: str,
                      numbers: tuple[str, ...], codes: tuple[str, ...]) -> None:
    a = judge(samples, live_sample)
    assert (a.status, a.failing_numbers, a.codes) == (status, numbers, codes)
    assert len(a.reasons) == len(a.codes)


def test_reasons_name_the_figures_the_hosts_and_the_causes() -> None:
    a = judge(site_probes("site3", at=T0, bad_hosts=[2]))
    first = a.reasons[0]
    assert "15: SER 50.0% < 95.0%" in first and "over 10 probe calls" in first
    assert "hosts site3-cs2" in first and "unreachable x5" in first
    assert a.evidence()["ser_112"] == 0.5


def test_redirects_are_outside_ser_but_count_in_asr() -> None:
    fig = number_figures("112", [sample("site3", "112", at=T0, calls=10, redirected=2)], ser_min=0.95)
    assert fig.ser == 1.0
    assert fig.asr == 0.8


def test_ser_threshold_is_strict_below() -> None:
    policy = POLICY.model_copy(update={"ser_min": 0.9})
    samples = [sample("site3", n, at=T0, calls=10, failed=1) for n in NUMBERS]  # SER exactly 0.9
    assert judge(samples, policy=policy).status == "ok"


def test_window_keeps_only_the_last_window_s_seconds() -> None:
    samples = [sample("site3", "112", at=T0 + t) for t in (0, 10, 20, 30, 40)]
    kept = window(samples, now=T0 + 40, window_s=30)
    assert [s.at - T0 for s in kept] == [20, 30, 40]  # the sample exactly window_s old is out
    assert window(samples, now=T0 + 100, window_s=30) == ()


def test_window_is_capped_per_key() -> None:
    samples = [sample("site3", "112", at=T0 + i * 0.001) for i in range(MAX_SAMPLES_PER_KEY + 50)]
    kept = window(samples, now=T0 + 10, window_s=3600)
    assert len(kept) == MAX_SAMPLES_PER_KEY
    assert kept[-1] == samples[-1]  # the newest are kept
