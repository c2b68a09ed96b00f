"""Every user file goes through one safe loader: malformed or hostile files are InvalidInput
(exit 2, one line naming the file), never an internal error, a traceback or a hang.

A seeded corpus of generated cases (mutated inventories, policies, alerting configs and
release manifests, plus byte-level corruptions) runs in-process through the real loaders;
any exception other than InvalidInput is what the CLI would report as exit 1.
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.alerting.config import load_config
from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import load_inventory
from orchestrator.policy.load import load_policy
from orchestrator.release.bundle import build_bundle, verify_bundle
from tests.conftest import REPO

SEED = 20261202
CASES_PER_KIND = 260  # four kinds: over 1,000 generated cases in all


def _verify_manifest(path: Path) -> object:
    return verify_bundle(path.parent)


LOADERS: dict[str, Callable[[Path], object]] = {
    "inventory": load_inventory,
    "policy": load_policy,
    "alerting": lambda p: load_config(p, env={}, with_secrets=False),
    "manifest": _verify_manifest,
}

HOSTILE_TEXT = {
    "non-utf8": b"all:\n  vars: {estate_name: \xff\xfe}\n",
    "huge int": b"a: " + b"9" * 5000 + b"\n",
    "deep nesting": b"a: " + b"[" * 500 + b"]" * 500 + b"\n",
    "impossible timestamp": b"a: 2026-13-45 10:00:00\n",
    "alias bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))).encode(),
    "infinite": b"a: .inf\n",
    "duplicate key": b"a: 1\na: 2\n",
    "tab soup": b"\t\t: :\n",
    "a list": b"- 1\n- 2\n",
    "a scalar": b"hello\n",
    "channels a word": b"channels: foo\n",
}


def _target(tmp_path: Path, kind: str) -> Path:
    """Where a loader reads its file (a manifest lives in a bundle directory)."""
    if kind == "manifest":
        bundle = build_bundle(source=REPO / "releases" / "stock", version="1.0", out_dir=tmp_path / "store")
        return bundle / "manifest.yaml"
    return tmp_path / f"{kind}.yml"


def _outcome(loader: Callable[[Path], object], path: Path) -> str:
    start = time.monotonic()
    try:
        loader(path)
        outcome = "ok"
    except InvalidInput as exc:
        assert "\n" not in exc.message, exc.message
        assert str(path.parent) in exc.message or str(path) in exc.message or path.name in exc.message, exc.message
        outcome = "invalid"
    assert time.monotonic() - start < 10, f"{path}: over 10 s"
    return outcome


@pytest.mark.parametrize("kind", list(LOADERS))
@pytest.mark.parametrize("case", list(HOSTILE_TEXT))
def test_hostile_text_is_invalid_input(tmp_path: Path, kind: str, case: str) -> None:
    path = _target(tmp_path, kind)
    path.write_bytes(HOSTILE_TEXT[case])
    assert _outcome(LOADERS[kind], path) == "invalid"


@pytest.mark.parametrize("kind", list(LOADERS))
def test_special_files_are_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    path = _target(tmp_path, kind)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    assert _outcome(LOADERS[kind], path) == "invalid"
    path.unlink()
    path.mkdir()
    assert _outcome(LOADERS[kind], path) == "invalid"
    path.rmdir()
    path.symlink_to(path.name)  # a loop
    assert _outcome(LOADERS[kind], path) == "invalid"


SEEDS = {
    "inventory": REPO / "inventory" / "production.example.yml",
    "policy": REPO / "policies" / "default.yml",
    "alerting": REPO / "policies" / "alerts.example.yml",
}

ODD_VALUES: list[Any] = [None, True, 0, -1, 10**40, 1e308, "", "x" * 300, [], {}, [1, [2, [3]]], {"k": {"k": "v"}},
                         "2026-13-45", "../../etc/passwd", "\x00", "ünïcode", 3.5, "0.0.0.1", 2**63]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _paths(v, (*prefix, i))
    return found


def _mutate(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return rng.choice(ODD_VALUES)
        where = rng.choice(paths)
        parent = doc
        for part in where[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.3 and isinstance(parent, dict):
            del parent[where[-1]]
        elif action < 0.4 and isinstance(parent, dict):
            parent[rng.choice(["colour", "ansible_connection", "x" * 80, "12"])] = rng.choice(ODD_VALUES)
        else:
            parent[where[-1]] = rng.choice(ODD_VALUES)
    return doc


INSERTS = [b"&a ", b"*a", b": ", b"\n  - ", b"{", b"[", b"!!python/object:os.system ", b"<<: "]


def _corrupt(text: bytes, rng: random.Random) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        i = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.4:
            data[i] = rng.randrange(256)
        elif choice < 0.7:
            del data[i: i + rng.randint(1, 40)]
        else:
            data[i:i] = rng.choice(INSERTS)
    return bytes(data)


@pytest.mark.parametrize("kind", list(LOADERS))
def test_seeded_fuzz_corpus(tmp_path: Path, kind: str) -> None:
    rng = random.Random(f"{SEED}-{kind}")
    path = _target(tmp_path, kind)
    seed_text = path.read_bytes() if kind == "manifest" else SEEDS[kind].read_bytes()
    seed_doc = yaml.safe_load(seed_text)
    outcomes: dict[str, int] = {}
    for i in range(CASES_PER_KIND):
        if i % 2:
            text = _corrupt(seed_text, rng)
        else:
            text = yaml.safe_dump(_mutate(seed_doc, rng), allow_unicode=True).encode()
        path.write_bytes(text)
        outcome = _outcome(LOADERS[kind], path)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # the corpus really exercises refusals (and is not all refusals either)
    assert outcomes.get("invalid", 0) > CASES_PER_KIND // 3, outcomes
