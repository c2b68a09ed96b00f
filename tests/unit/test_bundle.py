"""Release bundles: build, verify, and refusal of missing, extra or modified files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import InvalidInput
from orchestrator.release.bundle import (
    build_bundle,
    bundle_digest,
    read_manifest,
    require_unchanged,
    require_verified,
    verify_bundle,
)
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


# --- hostile bundles and sources (issue: safety boundaries, defects 3 and 4) ---

def _manifest(bundle: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((bundle / "manifest.yaml").read_text())
    return doc


def _rewrite(bundle: Path, doc: dict[str, Any]) -> None:
    (bundle / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def test_a_payload_symlink_is_refused_not_hashed_through(bundle: Path) -> None:
    (bundle / "routing.cfg").unlink()
    (bundle / "routing.cfg").symlink_to("/etc/passwd")
    report = verify_bundle(bundle)
    assert not report.ok and "routing.cfg" in report.unsafe


def test_a_directory_symlink_is_refused(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "id_ed25519").write_text("key")
    (bundle / "keys").symlink_to(tmp_path / "secret")
    report = verify_bundle(bundle)
    assert not report.ok and report.unsafe == ("keys",)


def test_a_fifo_is_refused_without_blocking(bundle: Path) -> None:
    os.mkfifo(bundle / "pipe")
    report = verify_bundle(bundle)
    assert not report.ok and report.unsafe == ("pipe",)


def test_a_manifest_in_a_subdirectory_is_an_unlisted_file(bundle: Path) -> None:
    (bundle / "sub").mkdir()
    (bundle / "sub" / "manifest.yaml").write_text("x")
    (bundle / "sub" / "deep.cfg").write_text("y")
    report = verify_bundle(bundle)
    assert report.extra == ("sub/deep.cfg", "sub/manifest.yaml")


def test_a_wrong_size_is_refused(bundle: Path) -> None:
    doc = _manifest(bundle)
    doc["files"][0]["size"] += 1
    _rewrite(bundle, doc)
    report = verify_bundle(bundle)
    assert report.modified == (doc["files"][0]["path"],)


@pytest.mark.parametrize(("mutate", "key", "words"), [
    (lambda d: d["files"].append(dict(d["files"][0])), "(top)", "listed twice"),
    (lambda d: d["files"].insert(0, {**d["files"][0], "sha256": "0" * 64}), "(top)", "listed twice"),
    (lambda d: d.update(entrypoint="../../../../tmp/evil.cfg"), "entrypoint", "plain relative path"),
    (lambda d: d.update(entrypoint="other.cfg"), "(top)", "not one of the listed files"),
    (lambda d: d["files"][0].update(path="/etc/passwd"), "files.0.path", "plain relative path"),
    (lambda d: d["files"][0].update(path="a/../kamailio.cfg"), "files.0.path", "plain relative path"),
    (lambda d: d["files"][0].update(size=-1), "files.0.size", "greater than or equal"),
    (lambda d: d.update(colour="red"), "colour", "unknown key"),
    (lambda d: d.update(name="../victim"), "name", "pattern"),
])
def test_hostile_manifests_are_refused_naming_the_field(bundle: Path, mutate: Any, key: str, words: str) -> None:
    doc = _manifest(bundle)
    mutate(doc)
    _rewrite(bundle, doc)
    with pytest.raises(InvalidInput) as err:
        verify_bundle(bundle)
    assert err.value.message.startswith(f"{bundle / 'manifest.yaml'}: {key}: ")
    assert words in err.value.message


def test_duplicate_keys_in_the_manifest_are_refused(bundle: Path) -> None:
    text = (bundle / "manifest.yaml").read_text()
    (bundle / "manifest.yaml").write_text(text + "name: other\n")
    with pytest.raises(InvalidInput, match="duplicate key 'name'"):
        verify_bundle(bundle)


def test_an_alias_bomb_manifest_is_refused_quickly(bundle: Path) -> None:
    rows = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
    (bundle / "manifest.yaml").write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidInput, match="expansion budget"):
        verify_bundle(bundle)


def _source(tmp_path: Path, meta: str = "name: callserver\n") -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "kamailio.cfg").write_text("cfg\n")
    (src / "release.yaml").write_text(meta)
    return src


def test_build_never_deletes_outside_its_store(tmp_path: Path) -> None:
    victim = tmp_path / "victim-7.0"
    victim.mkdir()
    (victim / "IMPORTANT.txt").write_text("keep me")
    (tmp_path / "victim.tmp").mkdir()
    store = tmp_path / "store"
    with pytest.raises(InvalidInput, match="name"):
        build_bundle(source=_source(tmp_path, "name: ../victim\n"), version="7.0", out_dir=store)
    for version in ("x/../../victim", "../victim", "/abs"):
        with pytest.raises(InvalidInput, match="--version"):
            build_bundle(source=tmp_path / "src", version=version, out_dir=store)
    assert (victim / "IMPORTANT.txt").read_text() == "keep me"
    assert (tmp_path / "victim.tmp").is_dir()
    assert not store.exists()  # refused before any filesystem change


def test_build_refuses_source_symlinks(tmp_path: Path) -> None:
    src = _source(tmp_path)
    (src / "shadow").symlink_to("/etc/shadow")
    with pytest.raises(InvalidInput, match="shadow: not a regular file"):
        build_bundle(source=src, version="1.0", out_dir=tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_build_refuses_unknown_keys_in_the_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"release\.yaml: colour: unknown key"):
        build_bundle(source=_source(tmp_path, "colour: red\n"), version="1.0", out_dir=tmp_path / "store")


def test_rebuild_replaces_the_bundle_atomically_and_leaves_no_staging(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = build_bundle(source=STOCK, version="9.0", out_dir=store)
    (first / "routing.cfg").write_text("tampered")
    second = build_bundle(source=STOCK, version="9.0", out_dir=store)
    assert second == first and verify_bundle(second).ok
    assert sorted(p.name for p in store.iterdir()) == ["callserver-9.0"]
    modes = {oct(p.stat().st_mode & 0o777) for p in second.rglob("*") if p.is_file()}
    assert modes == {"0o644"}


def test_a_bundle_symlinked_into_the_store_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    store = tmp_path / "store"
    store.mkdir()
    (store / "callserver-9.0").symlink_to(elsewhere)
    bundle = build_bundle(source=STOCK, version="9.0", out_dir=store)
    assert not bundle.is_symlink() and verify_bundle(bundle).ok
    assert (elsewhere / "keep.txt").read_text() == "keep"


def test_a_bundle_rebuilt_between_waves_is_refused(tmp_path: Path) -> None:
    """The digest journalled at preflight names the content; a rebuilt bundle, valid on its
    own, is another content and must not reach the next site."""
    store = tmp_path / "store"
    bundle = build_bundle(source=STOCK, version="9.0", out_dir=store)
    digest = bundle_digest(bundle)
    assert require_unchanged(bundle, digest).version == "9.0"
    src = tmp_path / "src"
    shutil.copytree(STOCK, src)
    (src / "routing.cfg").write_text((src / "routing.cfg").read_text() + "\n# changed\n")
    build_bundle(source=src, version="9.0", out_dir=store)
    assert verify_bundle(bundle).ok
    with pytest.raises(InvalidInput, match="changed since the run's preflight"):
        require_unchanged(bundle, digest)


VERIFY = REPO / "playbooks" / "roles" / "callserver" / "files" / "callserver-verify"


def _on_host(release: Path, digest: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(VERIFY), str(release), digest], capture_output=True, text=True, timeout=30,
                          check=False)


def test_the_hosts_own_verification_before_the_switch(tmp_path: Path) -> None:
    """callserver-verify runs on the host against the copied release (sh, awk, sha256sum only)."""
    release = tmp_path / "releases" / "9.0"
    shutil.copytree(build_bundle(source=STOCK, version="9.0", out_dir=tmp_path / "store"), release)
    digest = bundle_digest(release)
    assert _on_host(release).returncode == 0
    assert _on_host(release, digest).returncode == 0
    bad = _on_host(release, "0" * 64)
    assert bad.returncode == 1 and "not the verified one" in bad.stderr
    (release / "routing.cfg").write_text("tampered\n")
    assert "differ from the manifest" in _on_host(release).stderr
    shutil.copyfile(tmp_path / "store" / "callserver-9.0" / "routing.cfg", release / "routing.cfg")
    (release / "extra.cfg").write_text("x")
    extra = _on_host(release)
    assert extra.returncode == 1 and "4 files present, manifest lists 3" in extra.stderr
    (release / "extra.cfg").unlink()
    (release / "link").symlink_to("/etc/passwd")
    assert "not regular files" in _on_host(release).stderr
    (release / "link").unlink()
    assert _on_host(release, digest).returncode == 0
