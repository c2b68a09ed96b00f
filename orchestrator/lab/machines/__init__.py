"""The lab's machine substrate: Debian 12 machines under systemd-nspawn on a private bridge.

Not wired into `callfleet lab up` yet. Pieces:
  image    build and cache the shared read-only base root (debootstrap)
  overlay  per-machine identity in each machine's overlay upper dir
  net      address plan (198.18.0.0/15 only), bridge, veth names, conflict checks
  cgroups  one cgroup per machine (private systemd tree, freezer, memory)
  manager  MachineLab: up / status / stop / start / down, state as JSON
  faults   link down/up, freeze/thaw, poweroff
See docs/LAB-MACHINES.md.
"""

from orchestrator.lab.machines.errors import (
    AddressInUse,
    AddressOutOfRange,
    HostToolsMissing,
    ImageBuildFailed,
    LabShapeChanged,
    MachineBootFailed,
    MachineStopFailed,
    NamingError,
)
from orchestrator.lab.machines.host import ensure_host_packages, missing_host_tools
from orchestrator.lab.machines.image import BaseImage, default_cache_dir, ensure_image
from orchestrator.lab.machines.manager import MachineLab
from orchestrator.lab.machines.models import Desired, LabRecord, MachineRecord, MachineState, MachineStatus

__all__ = [
    "AddressInUse",
    "AddressOutOfRange",
    "BaseImage",
    "Desired",
    "HostToolsMissing",
    "ImageBuildFailed",
    "LabRecord",
    "LabShapeChanged",
    "MachineBootFailed",
    "MachineLab",
    "MachineRecord",
    "MachineState",
    "MachineStatus",
    "MachineStopFailed",
    "NamingError",
    "default_cache_dir",
    "ensure_host_packages",
    "ensure_image",
    "missing_host_tools",
]
