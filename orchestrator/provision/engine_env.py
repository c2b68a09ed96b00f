"""Where the Pulumi engine is and the environment it runs in.

The engine is looked for on PATH, then in the checkout's tools directory (`make pulumi`
builds it there when no `pulumi` is installed), then where get.pulumi.com installs it.
The environment puts the engine's directory first on PATH, so the engine finds the
plugins beside it (callfleet's shims for Python dynamic providers and policy packs), and
names this interpreter as the Python those shims run, so the provider and the pack import
the same callfleet as the program.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from orchestrator.errors import ToolMissing

INSTALL_URL = "https://www.pulumi.com/docs/install/"
INSTALL_HINT = (f"install the Pulumi CLI: `curl -fsSL https://get.pulumi.com | sh` (see {INSTALL_URL}); "
                "the engine is a separate binary and is not on PyPI: `pip install pulumi` only brings "
                "the Python SDK; in a callfleet checkout with Go installed, `make pulumi` builds it "
                "into .tools/bin")
TOOLS_DIR_ENV = "CALLFLEET_TOOLS_DIR"
# The checkout this package runs from (editable install): <checkout>/orchestrator/provision/.
_CHECKOUT = Path(__file__).resolve().parents[2]


def tools_dir() -> Path:
    """The project-local tools directory (`make pulumi` output): $CALLFLEET_TOOLS_DIR or .tools."""
    configured = os.environ.get(TOOLS_DIR_ENV)
    return Path(configured) if configured else _CHECKOUT / ".tools"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def locate_pulumi() -> Path:
    """The `pulumi` CLI: PATH, the tools directory, ~/.pulumi/bin; ToolMissing if none."""
    found = shutil.which("pulumi")
    if found:
        return Path(found)
    for candidate in (tools_dir() / "bin" / "pulumi", Path.home() / ".pulumi" / "bin" / "pulumi"):
        if _executable(candidate):
            return candidate
    raise ToolMissing("the Pulumi CLI (`pulumi`) is not installed on this machine: "
                      "`callfleet provision` drives the Pulumi engine through the Automation API",
                      hint=INSTALL_HINT)


def engine_env(binary: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables for the engine's processes (merged over the caller's environment by the CLI)."""
    env = dict(base or {})
    path = env.get("PATH", os.environ.get("PATH", ""))
    env["PATH"] = os.pathsep.join([str(binary.parent), *([path] if path else [])])
    # The shims start this interpreter unless the stack names a virtualenv.
    env.setdefault("PULUMI_PYTHON_CMD", sys.executable)
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


# The executable form of a policy pack (policies/crossguard/analyzer).
PACK_ANALYZER = "analyzer"


def policy_pack_arg(pack: Path, env: Mapping[str, str]) -> Path:
    """What to pass as `--policy-pack`: the pack's directory, or its analyzer executable.

    The engine runs a Python pack directory only through the Python language host
    (pulumi-language-python), which `make pulumi` cannot build (its module is not on the
    Go module proxy). Without one, the pack's executable form is started directly.
    """
    analyzer = pack / PACK_ANALYZER
    if shutil.which("pulumi-language-python", path=env.get("PATH")) is None and _executable(analyzer):
        return analyzer
    return pack
