"""Hypervisor back ends: QEMU runs VMs; libvirt and Xen configurations are rendered."""
