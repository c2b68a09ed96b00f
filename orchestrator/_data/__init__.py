"""Files callfleet needs at run time, shipped inside the package.

The repository keeps them where the product's layout puts them (playbooks/, policies/,
releases/, inventory/, Pulumi.yaml at the top); the links here make them part of the
`orchestrator` package, so a wheel carries them (setuptools copies what a link points
at) and an editable install reads the checkout itself. Read them through
orchestrator.resources, never by a path relative to the source tree.
"""
