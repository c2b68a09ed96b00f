"""The pure lease decision: grant, renew, refuse; tokens move on; fencing."""

from __future__ import annotations

from orchestrator.store.lease import Holder, LeaseState, Verdict, decide, valid

A = Holder(host="runner-a", pid=10, start=100)
B = Holder(host="runner-b", pid=20, start=200)


def test_a_free_lease_is_granted_with_the_next_token() -> None:
    d = decide(LeaseState(holder=None, expires=None, token=4), me=A, now=1000, ttl_s=30, local_alive=None)
    assert (d.verdict, d.token, d.expires) == (Verdict.GRANTED, 5, 1030)


def test_the_holder_renews_under_the_same_token() -> None:
    d = decide(LeaseState(holder=A, expires=1010, token=5), me=A, now=1005, ttl_s=30, local_alive=True)
    assert (d.verdict, d.token, d.expires) == (Verdict.RENEWED, 5, 1035)


def test_another_hosts_live_lease_is_refused_until_it_expires() -> None:
    held = LeaseState(holder=A, expires=1030, token=5)
    d = decide(held, me=B, now=1010, ttl_s=30, local_alive=None)
    assert d.verdict is Verdict.REFUSED and d.holder == A and d.remaining_s == 20
    d = decide(held, me=B, now=1030.5, ttl_s=30, local_alive=None)
    assert (d.verdict, d.token) == (Verdict.GRANTED, 6)


def test_a_dead_local_holder_is_taken_over_at_once_a_live_one_is_not() -> None:
    me = Holder(host="runner-a", pid=11, start=1)
    held = LeaseState(holder=A, expires=1030, token=5)
    assert decide(held, me=me, now=1010, ttl_s=30, local_alive=False).verdict is Verdict.GRANTED
    assert decide(held, me=me, now=1010, ttl_s=30, local_alive=True).verdict is Verdict.REFUSED


def test_a_lease_from_before_expiries_holds_only_while_its_local_process_lives() -> None:
    old = LeaseState(holder=A, expires=None, token=0)
    me = Holder(host="runner-a", pid=11, start=1)
    assert decide(old, me=me, now=1, ttl_s=30, local_alive=True).verdict is Verdict.REFUSED
    assert decide(old, me=B, now=1, ttl_s=30, local_alive=None).verdict is Verdict.GRANTED


def test_a_reused_pid_is_another_holder() -> None:
    reused = Holder(host="runner-a", pid=10, start=999)
    d = decide(LeaseState(holder=A, expires=1030, token=5), me=reused, now=1010, ttl_s=30, local_alive=False)
    assert d.verdict is Verdict.GRANTED


def test_fencing_refuses_a_moved_token_or_an_expired_lease() -> None:
    assert valid(LeaseState(holder=A, expires=1030, token=5), token=5, now=1010)
    assert not valid(LeaseState(holder=B, expires=1060, token=6), token=5, now=1010)  # taken over
    assert not valid(LeaseState(holder=A, expires=1030, token=5), token=5, now=1031)  # paused past expiry
    assert not valid(LeaseState(holder=None, expires=None, token=5), token=5, now=1010)  # dropped
