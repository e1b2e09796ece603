"""One way to check a value read from a YAML file (a cluster spec, the master's settings).

Each check names the key in its one-line error, raised as the caller's class (``InputError`` for a spec,
``SettingsError`` for the settings), and returns the value as its type. A YAML bomb, a deep document and a
key given twice are the reader's (``oscarvt.spec.read_yaml``); what a value means (a path, a port, a
name) is the caller's.
"""

from __future__ import annotations

from typing import Any, Iterable

from oscarvt.errors import InputError, shown


def mapping(raw: Any, key: str, error: type[InputError] = InputError) -> dict[str, Any]:
    """A mapping (a copy of it)."""
    if not isinstance(raw, dict):
        raise error(f"key '{key}' must be a mapping, not {type(raw).__name__}")
    return dict(raw)


def listed(raw: Any, key: str, error: type[InputError] = InputError) -> list[Any]:
    """A list."""
    if not isinstance(raw, list):
        raise error(f"key '{key}' must be a list, not {type(raw).__name__}")
    return raw


def whole_number(raw: Any, key: str, error: type[InputError] = InputError) -> int:
    """A whole number (not a boolean, which YAML would also read as one)."""
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise error(f"key '{key}' must be a whole number, not {shown(raw)}")
    return raw


def text(raw: Any, key: str, error: type[InputError] = InputError, blank: bool = True,
         numbers: bool = False) -> str:
    """One line of printable text (it reaches shells, QEMU, OSCAR's files, mail headers and logs: no control
    character, no line or paragraph separator). ``blank``: empty or white space is allowed; ``numbers``: a YAML
    number is taken as its digits (a spec's ``password: 1234``)."""
    if isinstance(raw, bool) or not (isinstance(raw, str) or numbers and isinstance(raw, int)) \
            or not (blank or str(raw).strip()):
        raise error(f"key '{key}' must be text, not {shown(raw)}")
    value = str(raw)
    if not value.isprintable():
        raise error(f"key '{key}' must be one line without control characters, not {shown(value)}")
    return value


def choice(raw: Any, allowed: Iterable[str], key: str, error: type[InputError] = InputError) -> str:
    """One of ``allowed``."""
    allowed = tuple(allowed)
    if raw not in allowed:
        raise error(f"key '{key}' must be one of {', '.join(allowed)}, not {shown(raw)}")
    return str(raw)


def no_unknown(values: dict[Any, Any], known: Iterable[str], prefix: str, error: type[InputError] = InputError) -> None:
    """No key but ``known`` (the first unknown one, sorted, is named with ``prefix``: ``nodes.``)."""
    unknown = sorted(set(values) - set(known), key=str)
    if unknown:
        raise error(f"unknown key '{prefix}{unknown[0]}'")
