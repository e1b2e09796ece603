"""oscarvt: test cluster software such as OSCAR on virtual clusters.

The driver creates a virtual cluster (a headnode and N compute nodes) from a
cluster spec, boots it, reaches it over SSH and destroys it. It runs on the
hypervisor host and knows nothing about Buildbot.
"""

__version__ = "0.1.0"
