"""Tests of orchestrator.provision (Pulumi program, policies, Automation API, CLI)."""
