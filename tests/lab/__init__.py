"""Tests of the lab itself (lab/): topologies, namespaces, private mounts, NAT, teardown."""
