"""The inventory as Ansible itself sees it: InventoryManager and VariableManager, the same
Ansible callfleet runs playbooks with.

YAML and INI inventories, directories, `group_vars/` and `host_vars/`, inventory plugins
and vaulted values all work, and the variables per host are exactly what
`ansible-inventory --list` prints under `_meta.hostvars` (the same call, minus Ansible's
internal static variables). Vaulted values are decrypted here (a wrong password is
invalid input naming the host and key), with the password file or client script that
`$ANSIBLE_VAULT_PASSWORD_FILE` names, as for every Ansible command: never a password on
a command line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput


class InventoryView(BaseModel):
    """Groups, their direct hosts and children, and each host's merged variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    hosts: dict[str, list[str]]  # group -> its direct hosts
    children: dict[str, list[str]]  # group -> its direct child groups
    hostvars: dict[str, dict[str, Any]]


@contextmanager
def _strict_ansible() -> Iterator[None]:
    """Ansible warns and carries on where callfleet must refuse: an inventory source no
    plugin could parse, a duplicate YAML key. Set for this load only."""
    from ansible import constants as C  # noqa: N812 - Ansible's own idiom

    saved = {k: getattr(C, k, None) for k in ("INVENTORY_ANY_UNPARSED_IS_FAILED", "INVENTORY_UNPARSED_IS_FAILED",
                                              "DUPLICATE_YAML_DICT_KEY")}
    C.INVENTORY_ANY_UNPARSED_IS_FAILED = True
    C.INVENTORY_UNPARSED_IS_FAILED = True
    C.DUPLICATE_YAML_DICT_KEY = "error"
    # Ansible's YAML constructor reads this one through its config manager, which reads the environment.
    saved_env = os.environ.get("ANSIBLE_DUPLICATE_YAML_DICT_KEY")
    os.environ["ANSIBLE_DUPLICATE_YAML_DICT_KEY"] = "error"
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(C, key, value)
        if saved_env is None:
            os.environ.pop("ANSIBLE_DUPLICATE_YAML_DICT_KEY", None)
        else:
            os.environ["ANSIBLE_DUPLICATE_YAML_DICT_KEY"] = saved_env


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:600]


def _plain(value: Any, *, where: str, path: Path) -> Any:
    """Ansible's tagged and vaulted values as plain JSON-able Python (vault decrypted)."""
    kind = type(value).__name__
    if "Encrypted" in kind or "Vault" in kind:
        try:
            return str(value)
        except Exception as exc:  # AnsibleVaultError and kin: the password does not open it
            why = ("no vault password: set $ANSIBLE_VAULT_PASSWORD_FILE" if not os.environ.get(
                "ANSIBLE_VAULT_PASSWORD_FILE") else f"wrong vault password? {_one_line(str(exc))}")
            raise InvalidInput(f"{path}: {where}: cannot decrypt the vaulted value ({why})",
                               hint="$ANSIBLE_VAULT_PASSWORD_FILE names a password file or a client script"
                               ) from None
    if isinstance(value, dict):
        return {str(k): _plain(v, where=f"{where}.{k}", path=path) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, where=f"{where}.{i}", path=path) for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None:
        return value
    # Ansible's tagged str/int/float subclasses: back to the builtins.
    return json.loads(json.dumps(value))


def _use_vault_secrets(secrets: list[Any]) -> None:
    """Ansible keeps the secrets that open vaulted values in one process-wide context, which
    it lets be initialised once: later loads (another inventory, another password) update it."""
    from ansible.parsing.vault import VaultSecretsContext

    current = VaultSecretsContext.current(optional=True)
    if current is None:
        VaultSecretsContext.initialize(VaultSecretsContext(secrets))
    else:
        current.secrets = secrets


def ansible_view(path: Path) -> InventoryView:
    """Load `path` (a file or a directory) with Ansible's inventory machinery."""
    from ansible import constants as C  # noqa: N812
    from ansible.cli import CLI
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    try:
        # Ansible prints its own warnings on stderr; the one line callfleet prints says it all.
        with _strict_ansible(), contextlib.redirect_stderr(io.StringIO()):
            if password_file:
                secrets = CLI.setup_vault_secrets(loader, vault_ids=[], vault_password_files=[password_file],
                                                  ask_vault_pass=False, auto_prompt=False, initialize_context=False)
                loader.set_vault_secrets(secrets)
                _use_vault_secrets(secrets)
            inventory = InventoryManager(loader=loader, sources=[str(path)])
            variables = VariableManager(loader=loader, inventory=inventory)
            hostvars: dict[str, dict[str, Any]] = {}
            for host in inventory.get_hosts():
                merged = variables.get_vars(host=host, include_hostvars=False, stage="all")
                for internal in C.INTERNAL_STATIC_VARS:
                    merged.pop(internal, None)
                hostvars[host.name] = _plain(dict(merged), where=f"hosts.{host.name}", path=path)
    except AnsibleError as exc:
        raise InvalidInput(f"{path}: {_one_line(exc.message)}") from None
    groups = inventory.groups
    return InventoryView(hosts={g: [h.name for h in grp.hosts] for g, grp in groups.items()},
                         children={g: [c.name for c in grp.child_groups] for g, grp in groups.items()},
                         hostvars=hostvars)
