"""The privnet lab: a whole privnet network on one machine, in network namespaces (design.md §7).

`python -m lab up TOPOLOGY | down | exec HOST -- CMD | status`; `lab.core.Lab` does the work,
`lab.netns` runs commands in a host with its private mounts, `lab.testing` gives pytest fixtures,
and `lab/topologies/*.toml` are the networks (format in `lab.topology`).
"""
