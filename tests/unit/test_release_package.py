"""Release packages: the version-to-package mapping, the .deb's contents, the flat
repository's index, and refusals (a bundle that fails verification, a bad version or
root, a repository path that is a file)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import InvalidInput
from orchestrator.release.bundle import build_bundle, bundle_digest
from orchestrator.release.package import deb_version, package_name, package_release
from tests.conftest import REPO, cli

STOCK = REPO / "releases" / "stock"
ROLE_DEFAULTS = REPO / "playbooks" / "roles" / "callserver" / "defaults" / "main.yml"

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return build_bundle(source=STOCK, version="5.6.0-lab1", out_dir=tmp_path / "store")


def paragraphs(text: str) -> list[dict[str, str]]:
    """A Packages file as one dict per stanza (continuation lines joined)."""
    out = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        last = ""
        for line in block.splitlines():
            if line.startswith(" "):
                fields[last] += "\n" + line
            else:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        out.append(fields)
    return out


@pytest.mark.parametrize(("version", "package", "debian"), [
    ("5.6.0-lab1", "callserver-release-5.6.0-lab1", "5.6.0-lab1"),
    ("5.6.0", "callserver-release-5.6.0", "5.6.0"),
    ("5.6.0-RC1", "callserver-release-5.6.0-+r+c1", "5.6.0-RC1"),
    ("5.6.0+deb1", "callserver-release-5.6.0++deb1", "5.6.0+deb1"),
    ("v2_1", "callserver-release-v2+-1", "0~v2.1"),
    ("5-", "callserver-release-5-", "0~5."),
])
def test_versions_map_to_debian_names_and_versions(version: str, package: str, debian: str) -> None:
    assert package_name("callserver", version) == package
    assert deb_version(version) == debian


def test_the_mapping_never_gives_two_releases_one_package() -> None:
    versions = ["5.6.0-rc1", "5.6.0-RC1", "5.6.0-Rc1", "5.6.0_rc1", "5.6.0+rc1", "5.6.0++rc1", "5.6.0+-rc1"]
    assert len({package_name("callserver", v) for v in versions}) == len(versions)


def test_the_role_computes_the_same_package_name() -> None:
    """The role's `callserver_package` (templated by ansible-core) and `release package` must agree."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    expr = yaml.safe_load(ROLE_DEFAULTS.read_text())["callserver_package"]
    for version in ("5.6.0-lab1", "5.6.0-RC1", "5.6.0+deb1", "v2_1", "A.B_c+D"):
        templar = Templar(loader=DataLoader(), variables={"callserver_package_name": "callserver",
                                                          "callserver_target_release": version})
        assert templar.template(trust_as_template(expr)) == package_name("callserver", version), version


@pytest.mark.parametrize("version", ["", "-5", "5.6 0", "5/6", "5.6:0", "é"])
def test_a_bad_version_is_refused(version: str) -> None:
    with pytest.raises(InvalidInput, match="release version"):
        package_name("callserver", version)


def test_the_package_holds_the_bundle_and_its_manifest_under_the_release_dir(bundle: Path, tmp_path: Path) -> None:
    result = package_release(bundle, tmp_path / "repo")
    deb = Path(result.deb)
    assert deb.name == "callserver-release-5.6.0-lab1_5.6.0-lab1_all.deb"
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {line.split()[-1]: (line.split()[0], line.split()[1]) for line in listing.splitlines()}
    release = "./opt/callserver/releases/5.6.0-lab1/"
    assert {p for p in entries if p.startswith(release) and p != release} == {
        release + f for f in ("kamailio.cfg", "routing.cfg", "release.yaml", "manifest.yaml")}
    assert set(entries) - {release} <= {"./", "./opt/", "./opt/callserver/", "./opt/callserver/releases/",
                                        *(release + f for f in ("kamailio.cfg", "routing.cfg", "release.yaml",
                                                                "manifest.yaml"))}
    assert all(owner == "root/root" for _, owner in entries.values())
    assert entries[release + "manifest.yaml"][0] == "-rw-r--r--"
    extracted = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(extracted)], check=True)
    assert bundle_digest(extracted / release) == bundle_digest(bundle) == result.digest


def test_the_root_is_an_option(bundle: Path, tmp_path: Path) -> None:
    result = package_release(bundle, tmp_path / "repo", root="/srv/cs")
    listing = subprocess.run(["dpkg-deb", "-c", result.deb], capture_output=True, text=True, check=True).stdout
    assert "./srv/cs/releases/5.6.0-lab1/kamailio.cfg" in listing
    assert result.install_dir == "/srv/cs/releases/5.6.0-lab1"


def test_the_index_lists_every_package_with_its_file_and_checksums(bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    package_release(bundle, repo)
    second = build_bundle(source=STOCK, version="5.6.0-lab2", out_dir=tmp_path / "store")
    result = package_release(second, repo)
    assert result.indexed == 2
    stanzas = {s["Package"]: s for s in paragraphs((repo / "Packages").read_text())}
    assert set(stanzas) == {"callserver-release-5.6.0-lab1", "callserver-release-5.6.0-lab2"}
    entry = stanzas["callserver-release-5.6.0-lab2"]
    deb = repo / "callserver-release-5.6.0-lab2_5.6.0-lab2_all.deb"
    assert entry["Version"] == "5.6.0-lab2" and entry["Architecture"] == "all"
    assert entry["Filename"] == f"./{deb.name}"
    assert int(entry["Size"]) == deb.stat().st_size
    assert entry["SHA256"] == hashlib.sha256(deb.read_bytes()).hexdigest() == result.sha256
    assert entry["MD5sum"] == hashlib.md5(deb.read_bytes()).hexdigest()
    assert result.digest in entry["Description"]
    assert gzip.decompress((repo / "Packages.gz").read_bytes()) == (repo / "Packages").read_bytes()
    release = (repo / "Release").read_text()
    for name in ("Packages", "Packages.gz"):
        data = (repo / name).read_bytes()
        assert f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}\n" in release


def test_the_index_matches_dpkg_scanpackages(bundle: Path, tmp_path: Path) -> None:
    if shutil.which("dpkg-scanpackages") is None:
        pytest.skip("dpkg-dev is not installed")
    repo = tmp_path / "repo"
    package_release(bundle, repo)
    scanned = subprocess.run(["dpkg-scanpackages", "."], cwd=repo, capture_output=True, text=True, check=True)
    assert scanned.stdout == (repo / "Packages").read_text()


def test_packaging_twice_gives_the_same_bytes_and_one_entry(bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = package_release(bundle, repo)
    again = package_release(bundle, repo)
    assert first.sha256 == again.sha256 and again.indexed == 1
    assert sorted(p.name for p in repo.iterdir() if not p.name.startswith(".")) == [
        "Packages", "Packages.gz", "Release", Path(first.deb).name]
    assert not [p for p in repo.iterdir() if p.name.startswith(".") and p.name != ".callfleet-repo.lock"]


def test_a_bundle_that_fails_verification_is_refused_and_nothing_written(bundle: Path, tmp_path: Path) -> None:
    (bundle / "routing.cfg").write_text("tampered\n")
    repo = tmp_path / "repo"
    with pytest.raises(InvalidInput, match=r"fails verification: modified routing\.cfg"):
        package_release(bundle, repo)
    assert not repo.exists()


def test_a_repository_path_that_is_a_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.write_text("not a directory\n")
    with pytest.raises(InvalidInput, match="not a directory"):
        package_release(bundle, repo)
    assert repo.read_text() == "not a directory\n"


@pytest.mark.parametrize("root", ["opt/callserver", "/opt/../etc", "/opt/./x", "/opt/call server", "/opt/x/", ""])
def test_a_bad_root_is_refused(bundle: Path, tmp_path: Path, root: str) -> None:
    with pytest.raises(InvalidInput, match="--root"):
        package_release(bundle, tmp_path / "repo", root=root)
    assert not (tmp_path / "repo").exists()


def test_the_cli_packages_and_refuses_with_one_line_and_exit_2(bundle: Path, tmp_path: Path) -> None:
    ok = cli("release", "package", str(bundle), "--repo", str(tmp_path / "repo"))
    assert ok.returncode == 0, ok.stderr
    assert "callserver-release-5.6.0-lab1" in ok.stdout
    (tmp_path / "file").write_text("")
    bad = cli("release", "package", str(bundle), "--repo", str(tmp_path / "file"))
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "not a directory" in bad.stderr
    missing = cli("release", "package", str(tmp_path / "nowhere"), "--repo", str(tmp_path / "repo"))
    assert missing.returncode == 2 and "not a release bundle" in missing.stderr
