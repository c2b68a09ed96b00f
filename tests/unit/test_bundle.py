"""Release bundles: build, verify, and refusal of missing, extra or modified files."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.release.bundle import build_bundle, read_manifest, require_verified, verify_bundle
from tests.conftest import REPO

STOCK = REPO / "releases" / "stock"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return build_bundle(source=STOCK, version="5.6.0-lab2", out_dir=tmp_path)


def test_build_lists_every_file_with_its_sha256(bundle: Path) -> None:
    manifest = read_manifest(bundle)
    assert manifest.version == "5.6.0-lab2"
    assert {f.path for f in manifest.files} == {"kamailio.cfg", "routing.cfg", "release.yaml"}
    assert verify_bundle(bundle).ok


def test_one_changed_byte_is_refused(bundle: Path) -> None:
    cfg = bundle / "routing.cfg"
    data = bytearray(cfg.read_bytes())
    data[10] ^= 0x01
    cfg.write_bytes(bytes(data))
    report = verify_bundle(bundle)
    assert not report.ok and report.modified == ("routing.cfg",)
    with pytest.raises(InvalidInput, match=r"modified routing\.cfg"):
        require_verified(bundle)


def test_missing_and_extra_files_are_refused(bundle: Path) -> None:
    (bundle / "release.yaml").unlink()
    (bundle / "backdoor.cfg").write_text("x")
    report = verify_bundle(bundle)
    assert report.missing == ("release.yaml",) and report.extra == ("backdoor.cfg",)


def test_bad_version_and_source_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--version"):
        build_bundle(source=STOCK, version="has space", out_dir=tmp_path)
    with pytest.raises(InvalidInput, match="not a release source"):
        build_bundle(source=tmp_path / "nope", version="1", out_dir=tmp_path)
    assert not list(tmp_path.glob(".*tmp"))
