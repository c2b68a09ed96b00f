"""Estate model and inventory loading: the production example, round trips, and bad inventories."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import estate_to_inventory, load_inventory
from orchestrator.lab.topology import LabParams, lab_estate
from tests.conftest import REPO, cli

EXAMPLE = REPO / "inventory" / "production.example.yml"


def test_production_example_is_a_six_site_estate_on_documentation_addresses() -> None:
    estate = load_inventory(EXAMPLE)
    assert len(estate.sites) == 6
    assert all(len(s.hosts) == 2 for s in estate.sites)
    doc_nets = ("192.0.2.", "198.51.100.", "203.0.113.")
    assert all(str(h.address).startswith(doc_nets) for h in estate.hosts)
    assert {n.number for n in estate.numbers} >= {"15", "17", "18", "112"}
    # probes never dial the live number in production
    assert all(n.probe_route != n.number for n in estate.numbers)


def test_lab_estate_round_trips_through_the_inventory(tmp_path: Path) -> None:
    estate = lab_estate(LabParams(sites=6, hosts_per_site=2, base="198.18.78"), tmp_path)
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump(estate_to_inventory(estate)))
    assert load_inventory(path) == estate


def test_models_are_frozen_and_refuse_unknown_fields() -> None:
    estate = load_inventory(EXAMPLE)
    with pytest.raises(Exception, match="frozen"):
        estate.sites[0].weight = 3  # type: ignore[misc]
    with pytest.raises(Exception, match="Extra inputs"):
        type(estate.sites[0]).model_validate({**estate.sites[0].model_dump(), "colour": "red"})


def _example() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))


def _site(doc: dict[str, Any], name: str) -> dict[str, Any]:
    site: dict[str, Any] = doc["all"]["children"]["callservers"]["children"][name]
    return site


def _missing_capacity(doc: dict[str, Any]) -> None:
    del _site(doc, "lyon")["vars"]["site_capacity_cps"]


def _duplicate_address(doc: dict[str, Any]) -> None:
    _site(doc, "lyon")["hosts"]["lyon-cs2"]["ansible_host"] = "192.0.2.11"


def _host_in_no_site(doc: dict[str, Any]) -> None:
    doc["all"]["hosts"] = {"orphan-cs1": {"ansible_host": "192.0.2.99"}}


def _wrong_type(doc: dict[str, Any]) -> None:
    _site(doc, "paris")["vars"]["site_weight"] = "heavy"


def _missing_number_field(doc: dict[str, Any]) -> None:
    del doc["all"]["vars"]["emergency_numbers"][1]["psap_uri"]


def _typo_key(doc: dict[str, Any]) -> None:
    _site(doc, "rennes")["vars"]["site_weigth"] = 50


def _bad_address(doc: dict[str, Any]) -> None:
    _site(doc, "lille")["hosts"]["lille-cs1"]["ansible_host"] = "not-an-ip"


BAD_CASES = [
    (_missing_capacity, "all.children.callservers.children.lyon.vars.site_capacity_cps", "Field required"),
    (_duplicate_address, "all.children.callservers.children.lyon.hosts.lyon-cs2", "already used by paris-cs1"),
    (_host_in_no_site, "all.hosts.orphan-cs1", "host is in no site"),
    (_wrong_type, "all.children.callservers.children.paris.vars.site_weight", "valid integer"),
    (_missing_number_field, "all.vars.emergency_numbers.1.psap_uri", "Field required"),
    (_typo_key, "all.children.callservers.children.rennes.vars.site_weigth", "unknown key"),
    (_bad_address, "all.children.callservers.children.lille.hosts.lille-cs1.ansible_host", "IPv4"),
]


@pytest.mark.parametrize(("mutate", "key", "message"), BAD_CASES, ids=[c[0].__name__ for c in BAD_CASES])
def test_bad_inventory_names_file_and_key(tmp_path: Path, mutate: Any, key: str, message: str) -> None:
    doc = _example()
    mutate(doc)
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InvalidInput) as err:
        load_inventory(path)
    assert str(path) in err.value.message
    assert key in err.value.message
    assert message in err.value.message


@pytest.mark.parametrize(("mutate", "key", "message"), BAD_CASES[:4], ids=[c[0].__name__ for c in BAD_CASES[:4]])
def test_cli_bad_inventory_is_one_line_and_exit_2(tmp_path: Path, mutate: Any, key: str, message: str) -> None:
    doc = _example()
    mutate(doc)
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = cli("estate", "validate", "-i", str(path))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and key in lines[0] and message in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yml"
    bad.write_text("all: [unclosed\n")
    proc = cli("estate", "validate", "-i", str(bad))
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr and str(bad) in proc.stderr
    proc = cli("estate", "show", "-i", str(tmp_path / "nope.yml"))
    assert proc.returncode == 2 and "no such inventory file" in proc.stderr


def test_cli_show_json_and_validate_good_example() -> None:
    proc = cli("estate", "validate", "-i", str(EXAMPLE), "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"valid": true' in proc.stdout
    proc = cli("estate", "show", "-i", str(EXAMPLE), "--json")
    data = yaml.safe_load(proc.stdout)
    assert [s["name"] for s in data["sites"]][:2] == ["paris", "lyon"]


def test_python_dash_m_and_help_teach_exit_codes() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    assert "Exit codes" in proc.stdout and "lab" in proc.stdout and "probe" in proc.stdout
