"""The driver phases, one module each (see design.md)."""
