"""Provisioning the estate with Pulumi.

The Pulumi program (`__main__.py`, which Pulumi.yaml points at) declares one component per
site, built from the estate model, on one of two substrates chosen by stack config:
`openstack` (pulumi_openstack) or `lab` (a dynamic provider calling the lab code).
The CrossGuard rules live here as pure functions (`rules`), the policy pack under
policies/crossguard only wraps them. The Automation API adapter (`automation`) is the one
place that talks to the Pulumi engine; `stack_outputs` turns a stack's outputs back into
the estate model, from which the Ansible inventory is written.

Modules are named so that none shadows a top-level module: Pulumi puts this directory on
sys.path[0] when it runs the program.
"""
