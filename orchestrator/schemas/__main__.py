"""`python -m orchestrator.schemas`: list, print or (developers) regenerate the shipped JSON Schemas."""

import sys

from orchestrator.schemas import main

sys.exit(main())
