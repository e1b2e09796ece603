"""The driver phases, one module each (see docs/design.md)."""
