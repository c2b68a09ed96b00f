"""CrossGuard glue: the rules as stack validation policies, without building the pack.

`pulumi_policy.PolicyPack(...)` starts a gRPC server and blocks, so it is built only in
policies/crossguard/__main__.py; everything here is importable and testable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from orchestrator.provision.facts import UNKNOWN, ResourceView, facts_from_resources
from orchestrator.provision.rules import RULES, EstateFacts, Rule

PACK_NAME = "callfleet-estate"


def plain(value: Any) -> Any:
    """A property value with the preview proxies removed and unknowns made UNKNOWN."""
    # Policy props raise UnknownValueError on access to a value not known at preview;
    # the facts must see every key, so unknowns become a sentinel instead.
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items: list[Any] = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def view_of(resource: PolicyResource) -> ResourceView:
    """A stack policy's resource as the facts read it."""
    return ResourceView(
        type=resource.resource_type, name=resource.name, urn=resource.urn,
        parent=resource.parent.urn if resource.parent is not None else None,
        props=plain(resource.props),
        dependencies=tuple(d.urn for d in resource.dependencies),
    )


def stack_facts(args: StackValidationArgs) -> EstateFacts:
    """The facts of the stack under validation."""
    return facts_from_resources(view_of(r) for r in args.resources)


def _validator(rule: Rule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.check(stack_facts(args)):
            report_violation(message, None)

    return validate


def stack_policies() -> list[StackValidationPolicy]:
    """One mandatory stack policy per rule in `rules.RULES`."""
    return [StackValidationPolicy(name=rule.name, description=rule.description,
                                  validate=_validator(rule), enforcement_level=EnforcementLevel.MANDATORY)
            for rule in RULES]
