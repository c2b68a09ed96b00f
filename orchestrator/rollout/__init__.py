"""The rollout engine. `plan` is the pure planning layer: estate facts and a policy in, an ordered
plan (canary first, one site per wave, the version-diversity reserve last) or a refusal naming
the rule it broke out."""
