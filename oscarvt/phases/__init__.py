"""The phases of the phase table (``oscarvt.phase_table``), a module per group (see docs/design.md).

No phase module imports another or the QEMU back end. What phases share is beside them in
``oscarvt``: the session with its VM handles (``session``, ``vms``), SSH to the headnode
(``access``), OSCAR's input files and run (``inputs``, ``oscar_run``), how the phases went
(``status``) and destroy (``teardown``), which run, claim and reap call too.
"""
