"""The Pulumi program, run by the engine: Pulumi.yaml says `main: orchestrator/provision/`.

Kept to one call so that everything testable lives in importable modules.
"""

from orchestrator.provision.program import main

main()
