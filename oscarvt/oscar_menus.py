"""OSCAR's CLI menus, transcribed from OSCAR's own code, and how OSCAR reads an answer file.

``install_cluster --cli`` passes each answer file to one menu (repository oscar-cluster/oscar,
line numbers at commit 0c35a10c):

- ``--buildimage`` -> ``scripts/cli/build_oscar_image_cli`` (``menu``, file mode, lines 239-263);
- ``--defineclients`` -> ``scripts/cli/define_oscar_clients_cli`` (``addclients``, file mode, 150-202);
- ``--networkclients`` -> ``lib/OSCAR/CLI_MAC.pm`` (``cli_menu`` 106-253, ``assign_macs_cli``
  259-309, ``cli_installmode``), with the MAC file read by ``lib/OSCAR/MAC.pm`` (``get_from_file``).

The two Perl scripts read the file as a list of lines: a line starting with ``#``, an empty
line and the line ``0`` are passed over; any other line is compared *as a number* with the
item numbers (`` 4``, ``4x`` are 4; ``four`` is 0 and matches nothing, silently); an item that
takes a value takes the very next line, whatever it is (a comment or a blank line included),
and one on the file's last line asks for its value on stdin instead. CLI_MAC reads one line at
a time, passing over blank lines, ``0`` and ``#`` lines everywhere, and compares items *as strings*
(``1 `` is not 1); at the end of the file it goes on reading forever (``response_filter``
takes the end for a blank line, lines 172-175, 407-422).

Where OSCAR would never end, or would go on having silently done less than the file asks,
:func:`replay` refuses the file, naming the line and the place in OSCAR's code:

- networking answers that end before 10 or 4, a MAC assignment method other than 1, 2, 3, an
  install mode OSCAR does not have: OSCAR reads forever;
- anything but 10 after networking item 4: ``__enable_install_mode`` (MAC.pm 809-828) returns
  1 on success, which ``cli_menu`` takes as failure and returns (CLI_MAC.pm 216-220), so nothing
  after a successful 4 is read (the boot CD, network boot, DHCP); and 4 must be followed by 10,
  which OSCAR reads when enabling fails;
- networking answers that set up neither the boot CD (8) nor network boot (9): the nodes
  could boot from nothing OSCAR made;
- a define-clients item 1 (``image_name`` loops forever in file mode, lines 164-166, 317-344),
  or 11 before the clients are added (OSCAR defines none);
- build-image answers that never reach 8 (Build Image): OSCAR builds nothing and its step 4
  still ends with status 0 (lines 92-99); step 5 then fails ("You must build at least one
  image!", define_oscar_clients_cli 137-143).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oscarvt.errors import InputError


@dataclass(frozen=True)
class Item:
    """One menu item: its number, OSCAR's label, and whether a value follows on the next line."""

    number: int
    label: str
    takes_value: bool = False


@dataclass(frozen=True)
class Menu:
    """One of OSCAR's CLI menus and the install_cluster flag whose file it reads."""

    flag: str
    title: str
    source: str
    items: tuple[Item, ...]

    def item(self, number: int) -> Item:
        return next(item for item in self.items if item.number == number)


BUILD_IMAGE = Menu("buildimage", "Build OSCAR Client Image", "scripts/cli/build_oscar_image_cli", (
    Item(1, "Image name", True), Item(2, "Package file", True), Item(3, "Distro", True),
    Item(4, "Package Repositories", True), Item(5, "Disk Partition File", True),
    Item(6, "IP Assignment Method", True), Item(7, "Post install action", True),
    Item(8, "Build Image"), Item(9, "Quit")))

DEFINE_CLIENTS = Menu("defineclients", "Define OSCAR Clients", "scripts/cli/define_oscar_clients_cli", (
    Item(1, "Image Name", True), Item(2, "Domain Name", True), Item(3, "Base Name", True),
    Item(4, "Number of Hosts", True), Item(5, "Starting Number", True), Item(6, "Padding", True),
    Item(7, "Starting IP", True), Item(8, "Subnet Mask", True), Item(9, "Default Gateway", True),
    Item(10, "Add Clients"), Item(11, "Quit")))

SETUP_NETWORKING = Menu("networkclients", "Setup Networking", "lib/OSCAR/CLI_MAC.pm", (
    Item(1, "Import MACs from file", True), Item(2, "Delete MACs"), Item(3, "Installation Mode", True),
    Item(4, "Enable Install Mode"), Item(5, "Dynamic DHCP update"), Item(6, "Configure DHCP Server"),
    Item(7, "Enable UYOK"), Item(8, "Build AutoInstall CD"), Item(9, "Setup Network Boot"),
    Item(10, "Finish")))

# After item 1's file name, when the file brought MACs that no client has yet (assign_macs_cli).
MAC_ASSIGNMENT = Menu("networkclients", "MAC Assignment Method", "lib/OSCAR/CLI_MAC.pm", (
    Item(1, "Automatically assign MACs"), Item(2, "Manually assign MACs"),
    Item(3, "Return to previous menu")))

# Item 3's choices: "None" and the deployment methods whose OCA component is available
# (lib/OSCAR/MAC.pm @install_mode_options, lib/OSCAR/OCA/XMIT_Deploy.pm open()).
INSTALL_MODES = ("None", "Rsync", "Bittorrent", "Flamethrower")

MENUS = {menu.flag: menu for menu in (BUILD_IMAGE, DEFINE_CLIENTS, SETUP_NETWORKING)}

_PERL_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)")


@dataclass(frozen=True)
class Answer:
    """One menu choice as OSCAR reads it: the item and its value."""

    item: int
    value: str | None = None
    extra: tuple[str, ...] = ()  # networking item 1: the assignment method and its answers


def perl_number(text: str) -> float:
    """``text`` read as a number, as Perl reads a string in ``==`` (`` 4``, ``4x`` are 4; ``four`` is 0)."""
    match = _PERL_NUMBER.match(text)
    try:
        return float(match.group(1)) if match else 0.0
    except OverflowError:
        return 0.0


def write_answers(menu: Menu, answers: list[tuple[int, list[str]]], note: str) -> str:
    """An answer file for ``menu``: each item's number, then the lines OSCAR reads after it.

    A comment goes before each item, never between an item and its value (the Perl menus
    take the very next line as the value).
    """
    lines = [f"# {menu.title}: {note}"]
    for number, following in answers:
        item = menu.item(number)
        if item.takes_value != bool(following):
            wants = "a value" if item.takes_value else "no value"
            raise ValueError(f"{menu.title} item {number} ({item.label}) takes {wants}")
        lines += [f"# {number}) {item.label}", str(number), *following]
    return "\n".join(lines) + "\n"


def replay(menu: Menu, text: str, where: str) -> list[Answer]:
    """The choices OSCAR makes from answer file ``text``, read as OSCAR reads it.

    Choices OSCAR ignores are left out. Networking item 1 is read as if its MAC file
    imports (it exists and brings MACs no client has), so that OSCAR asks for the
    assignment method. Where OSCAR would never end (see the module's text), OscarvtError
    names ``where``, the line and the reason.
    """
    if menu is SETUP_NETWORKING:
        return _replay_networking(text, where)
    return _replay_perl_lines(menu, text, where)


def _lines(text: str) -> list[str]:
    """The file's lines as Perl's ``<FILE>`` and ``chomp`` give them: split at newlines only."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return lines


def _replay_perl_lines(menu: Menu, text: str, where: str) -> list[Answer]:
    lines = _lines(text)
    numbers = {item.number: item for item in menu.items}
    last = max(numbers)  # Quit; the one before it builds or adds and ends the reading too
    answers: list[Answer] = []
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if line.startswith("#") or line in ("", "0"):
            continue
        value = perl_number(line)
        item = numbers.get(int(value)) if value.is_integer() else None
        if item is None:
            continue
        if menu is DEFINE_CLIENTS and item.number == 1:
            raise InputError(f"{where} line {number}: menu item 1 ({item.label}) makes OSCAR's "
                             f"{menu.source} loop forever in file mode; leave it out (OSCAR takes the first image)")
        if menu is DEFINE_CLIENTS and item.number == last:
            raise InputError(f"{where} line {number}: menu item {last} ({item.label}) ends OSCAR's "
                             f"{menu.source} without adding the clients: OSCAR defines none and no node "
                             "can install; end with 10 (Add Clients) or nothing")
        answer_value = None
        if item.takes_value:
            answer_value = lines[i] if i < len(lines) else None
            i += 1
        answers.append(Answer(item.number, answer_value))
        if item.number in (last, last - 1):
            break
    if menu is BUILD_IMAGE and not any(answer.item == 8 for answer in answers):
        ended = (f"line {_line_of(lines, answers[-1].item)}: item 9 (Quit) ends the menu"
                 if answers and answers[-1].item == 9 else "the file ends")
        raise InputError(f"{where}: {ended} before item 8 (Build Image): OSCAR's {menu.source} builds no "
                         "image and still ends with status 0, and step 5 fails ('You must build at least one "
                         "image!'); end with 8")
    return answers


def _line_of(lines: list[str], item: int) -> int:
    """The number of the last line that holds ``item`` alone (for messages)."""
    return max((n for n, line in enumerate(lines, start=1) if line.strip() == str(item)), default=len(lines))


def _replay_networking(text: str, where: str) -> list[Answer]:
    """Read networking answers as CLI_MAC's ``cli_menu`` does, up to 4 or 10, which end the menu."""
    reader = _NetworkingLines(text, where)
    items = {str(item.number) for item in SETUP_NETWORKING.items}
    answers: list[Answer] = []
    while True:
        number, line = reader.next_line(f"a menu choice (10, {SETUP_NETWORKING.item(10).label}, ends it)")
        if line not in items:
            continue  # OSCAR ignores it
        item = int(line)
        if item == 1:
            answers.append(_replay_mac_file(reader))
        elif item == 3:
            answers.append(_replay_install_mode(reader))
        else:
            answers.append(Answer(item))
            if item == 4:
                _after_enable(reader.rest(), number, where)
            if item in (4, 10):
                _needs_boot_media(answers, number, where)
                return answers


class _NetworkingLines:
    """A networking answer file's lines as CLI_MAC reads them, one at a time: blank lines, ``0``
    and ``#`` lines passed over; the end of the file is an error (OSCAR would read on forever)."""

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.wanted = [(n, line) for n, line in enumerate(_lines(text), start=1)
                       if line not in ("", "0") and not line.startswith("#")]
        self.position = 0

    def next_line(self, waiting_for: str) -> tuple[int, str]:
        """The next line read and its number; ``waiting_for`` says what OSCAR wants there."""
        if self.position >= len(self.wanted):
            raise InputError(f"{self.where}: the file ends while OSCAR waits for {waiting_for}; "
                             f"OSCAR's {SETUP_NETWORKING.source} would read past its end forever")
        self.position += 1
        return self.wanted[self.position - 1]

    def rest(self) -> list[tuple[int, str]]:
        """The lines not read yet, with their numbers."""
        return self.wanted[self.position:]


def _replay_mac_file(reader: _NetworkingLines) -> Answer:
    """Networking item 1: the MAC file's name, the assignment method, and for method 2 the
    MAC and client pairs up to the first 'quit'."""
    methods = {str(item.number): item.label for item in MAC_ASSIGNMENT.items}
    _, name = reader.next_line("the MAC file's name")
    method_line, method = reader.next_line("the MAC assignment method (1, 2 or 3)")
    if method not in methods:
        choices = ", ".join(f"{number} {label}" for number, label in methods.items())
        raise InputError(f"{reader.where} line {method_line}: '{method}' is not a MAC assignment method "
                         f"({choices}); OSCAR's assign_macs_cli would loop forever")
    extra = [method]
    if method == "2":
        extra += _replay_mac_picks(reader)
    return Answer(1, name, tuple(extra))


def _replay_mac_picks(reader: _NetworkingLines) -> list[str]:
    """MAC assignment method 2's answers: a MAC, then its client, again and again until one is 'quit'."""
    picks: list[str] = []
    while True:
        _, pick = reader.next_line("a MAC to assign, or 'quit'")
        picks.append(pick)
        if pick == "quit":
            return picks
        _, client = reader.next_line("the client for that MAC, or 'quit'")
        picks.append(client)
        if client == "quit":
            return picks


def _replay_install_mode(reader: _NetworkingLines) -> Answer:
    """Networking item 3: the lines up to the first installation mode OSCAR has (it asks again after another)."""
    while True:
        _, mode = reader.next_line(f"an installation mode ({' '.join(INSTALL_MODES)})")
        if mode in INSTALL_MODES:
            return Answer(3, mode)


def _after_enable(rest: list[tuple[int, str]], enable_line: int, where: str) -> None:
    """Refuse what follows networking item 4 unless it is 10: OSCAR never reads it after a
    successful 4, and reads 10 only when enabling fails."""
    enable = SETUP_NETWORKING.item(4).label
    for number, line in rest:
        if line == "10":
            return
        label = next((f" ({item.label})" for item in SETUP_NETWORKING.items if str(item.number) == line), "")
        raise InputError(f"{where} line {number}: '{line}'{label} comes after item 4 ({enable}, line "
                         f"{enable_line}), and OSCAR reads nothing after a successful item 4 "
                         f"({SETUP_NETWORKING.source} lines 216-220 take __enable_install_mode's 1 for a "
                         "failure and leave the menu); put 4 last, then 10")
    raise InputError(f"{where} line {enable_line}: item 4 ({enable}) is not followed by 10 (Finish): when "
                     f"enabling fails OSCAR's {SETUP_NETWORKING.source} reads on and loops at the end of "
                     "the file; end the file with 10")


def _needs_boot_media(answers: list[Answer], end_line: int, where: str) -> None:
    """Refuse networking answers that make neither the boot CD (8) nor network boot (9)."""
    if not any(answer.item in (8, 9) for answer in answers):
        raise InputError(f"{where} line {end_line}: the menu ends before item 8 ({SETUP_NETWORKING.item(8).label}) "
                         f"or 9 ({SETUP_NETWORKING.item(9).label}): the nodes could boot from nothing OSCAR made")
