"""The callfleet CrossGuard policy pack: builds the pack and serves it to the engine.

Only this file builds `PolicyPack` (which starts a gRPC server and blocks); the rules
and the policies live in orchestrator.provision (rules, facts, crossguard).
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from orchestrator.provision.crossguard import PACK_NAME, stack_policies

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=stack_policies())
