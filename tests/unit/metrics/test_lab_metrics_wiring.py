"""Lab wiring of the metrics: scrape config from the estate, metrics listeners of the
hosts, and the estate's metrics URL through the inventory."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import estate_from_inventory, estate_to_inventory
from orchestrator.estate.model import Estate
from orchestrator.lab import prometheus
from orchestrator.lab.topology import LabParams, prometheus_url


def test_scrape_config_covers_the_edge_and_every_host_each_second(estate: Estate) -> None:
    cfg = prometheus.scrape_config(estate)
    assert cfg["global"]["scrape_interval"] == "1s" and cfg["global"]["evaluation_interval"] == "1s"
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs[prometheus.EDGE_JOB]["static_configs"] == [{"targets": ["198.18.99.2:9101"]}]
    hosts = jobs[prometheus.CALLSERVER_JOB]["static_configs"]
    assert [h["targets"][0] for h in hosts] == ["198.18.99.4:9101", "198.18.99.5:9101", "198.18.99.6:9101",
                                                "198.18.99.7:9101"]
    assert hosts[2]["labels"] == {"site": "site2", "host": "site2-cs1"}
    # xhttp_prom stamps its samples; stamped samples never go stale, so stamps are ignored
    assert all(j["honor_timestamps"] is False for j in jobs.values())
    yaml.safe_dump(cfg)  # serialisable as written to prometheus.yml


def test_lab_estate_metrics_url_round_trips_through_the_inventory(estate: Estate) -> None:
    assert estate.metrics_url == prometheus_url(LabParams(base="198.18.99")) == "http://198.18.99.3:9090"
    doc = estate_to_inventory(estate)
    assert doc["all"]["vars"]["callfleet_metrics_url"] == "http://198.18.99.3:9090"
    assert estate_from_inventory(doc, Path("inv.yml")) == estate
    doc2 = copy.deepcopy(doc)
    del doc2["all"]["vars"]["callfleet_metrics_url"]
    assert estate_from_inventory(doc2, Path("inv.yml")).metrics_url is None


@pytest.mark.parametrize("url", ["127.0.0.1:9090", "ftp://x", "http://", "http://a b"])
def test_a_bad_metrics_url_names_its_inventory_key(estate: Estate, url: str) -> None:
    doc = estate_to_inventory(estate)
    doc["all"]["vars"]["callfleet_metrics_url"] = url
    with pytest.raises(InvalidInput, match=r"inv\.yml: all\.vars\.callfleet_metrics_url"):
        estate_from_inventory(doc, Path("inv.yml"))
