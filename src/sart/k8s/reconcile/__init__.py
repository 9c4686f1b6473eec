"""Reconcilers: observed state in, desired state out; no client, no clock."""
