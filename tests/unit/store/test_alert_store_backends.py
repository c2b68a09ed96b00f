"""The alert store on both backends: records, the dedupe window, state moves."""

from __future__ import annotations

from orchestrator.alerting import AlertStore, NotificationState
from tests.unit.alerting.conftest import lyon


def test_alerts_deduplicate_and_move_state_on_both_backends(store_url: str) -> None:
    store = AlertStore(path=store_url)
    alert = lyon()
    first = store.record_alert(alert)
    nid, deliver = store.claim(alert_id=first, alert=alert, audience="noc", channel="mail", channel_type="smtp",
                               window_s=600)
    assert deliver
    again = AlertStore(path=store_url)  # a second process's view (and a re-run of the migrations)
    dup, deliver_dup = again.claim(alert_id=again.record_alert(alert), alert=alert, audience="noc", channel="mail",
                                   channel_type="smtp", window_s=600)
    assert not deliver_dup
    store.update(nid, state=NotificationState.SENT, attempts=1)
    states = {d.id: d.state for d in again.deliveries(incident_id=alert.incident_id)}
    assert states == {nid: NotificationState.SENT, dup: NotificationState.SUPPRESSED}
    assert [i.alerts for i in again.incidents()] == [2]
    store.close()
    again.close()
