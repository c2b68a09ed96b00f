"""The fleet guard (issue 14): every site a rollout has upgraded stays watched until the run ends.

A pure decision core, in the watch's shape: `judge` (tallies since the guard began, per site
and number, in; culprits, drains and the fleet rollback's order out), parameters in
`orchestrator.policy.guard.GuardPolicy`. The impure side (probing the sites, reading the
edge's live counters, draining, rolling back) belongs to the rollout executor.
"""
