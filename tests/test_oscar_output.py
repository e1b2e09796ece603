"""Reading OSCAR's installer output (oscarvt/oscar_output.py): its steps' banners, the line that says
why it failed, and its loops. The lines are OSCAR's own, as its code prints them (oscar-cluster/oscar
at 0c35a10c: lib/OSCAR/Logger.pm's sections, scripts/cli/main_cli's and install_cluster's dies)."""

from __future__ import annotations

import pytest

from oscarvt import oscar_output
from oscarvt.oscar_output import RepeatWatch, StepSeen, describe_failure, failure_cause, step_seen

SECTION = "=" * 80


def section(title: str) -> list[str]:
    """Logger.pm oscar_log(SECTION): a blank line, a line of '=', '== TITLE', a line of '='."""
    return ["", SECTION, f"== {title}", SECTION]


def subsection(title: str) -> str:
    """Logger.pm oscar_log(SUBSECTION): the title centred in 80 columns of '-'."""
    before = (80 - len(title)) // 2 - 1
    return "-" * before + f" {title} " + "-" * (80 - before - len(title) - 2)


WRAPPER = "Oscar Wizard failed to run successfully at ./install_cluster line 348."


@pytest.mark.parametrize("line, seen", [
    (subsection("Running command: /opt/oscar/src/cli//oscar-selector --file /x"), StepSeen(1, False)),
    ("== Beginning the OSCAR Configurator", StepSeen(2, False)),
    ("== Installing OSCAR Server Packages", StepSeen(3, False)),
    ("== Packages Successfully Installed", StepSeen(3, True)),
    (subsection("Running command: /opt/oscar/scripts/cli/build_oscar_image_cli --file /i/buildimage eth1"),
     StepSeen(4, False)),
    (subsection("Running command: ./define_oscar_clients_cli --file /i/defineclients eth1"), StepSeen(5, False)),
    ("== Running step 6 of the OSCAR wizard: Setup networking", StepSeen(6, False)),
    ("[INFO - main_cli] Step 6: Completed successfully", StepSeen(6, True)),
    (subsection('Running script "/var/lib/oscarvt/boot_hook"'), StepSeen(7, False)),
    (subsection("Successfully completed the cluster install"), StepSeen(7, True)),
    ("== Test Cluster Setup", StepSeen(8, False)),
    (subsection("Step 8 - Successfully tested the cluster setup"), StepSeen(8, True)),
    ("Running command: make install", None),
    ("== Packages not Installed!", None),
])
def test_each_step_is_known_by_oscars_own_banner(line, seen):
    assert step_seen(line) == seen


def test_a_die_in_main_cli_is_the_cause_after_the_last_step_that_ended():
    # OSCAR's head: main_cli line 156 calls WizardEnv::update_env, whose package is OSCAR::WizardEnv
    lines = [*section("Installing OSCAR Server Packages"), *section("Packages Successfully Installed"),
             "Undefined subroutine &WizardEnv::update_env called at ./main_cli line 156.", WRAPPER]
    assert describe_failure(lines, StepSeen(3, True), 2) == (
        "OSCAR failed after step 3 - Install OSCAR Server Packages: "
        "Undefined subroutine &WizardEnv::update_env called at ./main_cli line 156.")


def test_a_step_that_dies_before_its_banner_is_named_by_its_script():
    # OSCAR's head: main_cli line 54 looks for its scripts in $OSCAR_HOME/src/cli/
    cause = ("ERROR: /opt/oscar/src/cli//oscar-selector is not available, check OSCAR is correctly installed "
             "and bootstrapped at ./main_cli line 130.")
    assert describe_failure(["System checked", cause, WRAPPER], None, 2) == (
        f"OSCAR failed in step 1 - Select Packages: {cause}")


def test_a_steps_own_message_is_the_cause_and_main_cli_names_the_step():
    lines = [subsection("Running command: ./define_oscar_clients_cli --file /i/defineclients eth1"),
             "*" * 34, "You must build at least one image!", "*" * 34, "",
             "Failed on Step 5 - Define OSCAR Clients at ./main_cli line 173.", WRAPPER]
    assert describe_failure(lines, StepSeen(5, False), 2) == (
        "OSCAR failed in step 5 - Define OSCAR Clients: You must build at least one image!")
    # the banner seen last may be older than the failure main_cli names
    assert describe_failure(lines, StepSeen(4, False), 2).startswith("OSCAR failed in step 5 - Define")


def test_a_crash_inside_step_6_is_quoted_with_perls_place():
    cause = "Can't call method \"name\" on unblessed reference at /opt/oscar/lib/OSCAR/CLI_MAC.pm line 131."
    lines = [*section("Running step 6 of the OSCAR wizard: Setup networking"), cause, WRAPPER]
    assert describe_failure(lines, StepSeen(6, False), 9) == (
        f"OSCAR failed in step 6 - Setup Networking: {cause}")


def test_warnings_decoration_and_banners_are_never_the_cause():
    lines = [subsection("Running command: ./build_oscar_image_cli --file /i/buildimage eth1"),
             "Use of uninitialized value $selection in numeric lt (<) at ./build_oscar_image_cli line 309.",
             "", "----", "Failed on Step 4 - Build OSCAR Client Image at ./main_cli line 164.", WRAPPER]
    # nothing of the step's own after its banner: main_cli's line is all there is
    assert failure_cause(lines) == "Failed on Step 4 - Build OSCAR Client Image at ./main_cli line 164."
    lines = [*section("Complete Cluster Setup"),
             subsection("Failed to properly complete the cluter install; please check the logs"),
             "Failed on Step 7 - Complete Cluster Setup at ./main_cli line 203.", WRAPPER]
    # main_cli's subsections as a step fails are its wrappers too: the step's own last word is the cause
    assert failure_cause(lines) == "Failed on Step 7 - Complete Cluster Setup at ./main_cli line 203."
    lines.insert(4, "ERROR: oscarnode1 (192.168.77.2): cannot configure the node over SSH")
    assert failure_cause(lines) == "ERROR: oscarnode1 (192.168.77.2): cannot configure the node over SSH"


def test_an_exit_without_a_word_says_so():
    assert describe_failure([], None, 137) == (
        "OSCAR failed before its first step: install_cluster exited with status 137 and said nothing")
    assert describe_failure(["", "***"], StepSeen(7, False), 1).endswith("status 1 and said nothing")


def test_a_hostile_line_is_quoted_printable_and_bounded():
    # colours go, a bell or another escape makes it quoted (its repr), cut as a printable line is
    cause = failure_cause(["\x1b[31mboom\x1b[0m\x07 \x1b]0;t" + "x" * 1000, WRAPPER])
    assert cause is not None and cause.startswith("'boom\\x07 \\x1b]0;txx") and cause.isprintable()
    assert len(cause) == oscar_output.MAX_SHOWN + 3 and cause.endswith("xxx...")
    cause = failure_cause(["\x1b[1mERROR\x1b[0m: " + "y" * 1000, WRAPPER])  # printable but long: cut
    assert cause == "ERROR: " + "y" * (oscar_output.MAX_SHOWN - 7) + "..."


def build_menu() -> list[str]:
    """build_oscar_image_cli's menu as it reprints it on an empty stdin (lines 291-305)."""
    return ["", "", "Select one", "-----------------------------------------", "1) Image name: oscarimage",
            "2) Package file: ", "3) Distro: debian-12-x86_64", "4) Package Repositories: ",
            "5) Disk Partition File: ", "6) IP Assignment Method: static", "7) Post install action: reboot",
            "8) Build Image", "9) Quit", ">  "]


def test_a_reprinted_menu_is_a_loop_within_a_couple_of_hundred_lines():
    watch = RepeatWatch()
    taken = 0
    found = None
    while found is None and taken < 1000:
        for line in build_menu():
            taken += 1
            found = watch.take(line, now=100.0 + taken / 1000)
            if found:
                break
    assert found == "Select one"  # the block's lines come equally often: the first is named
    assert taken <= 260


def test_a_single_repeated_line_is_a_loop():
    watch = RepeatWatch()
    found = [watch.take("configurator> Use of uninitialized value", now=float(n) / 100) for n in range(200)]
    assert found[:199] == [None] * 199 and found[199] == "configurator> Use of uninitialized value"


def test_an_install_log_and_a_slow_wait_are_not_loops():
    watch = RepeatWatch()
    # an install prints many different lines; a few repeat ("Done.", "Reading package lists...")
    lines = [f"Unpacking package{n} (1.{n}) ..." if n % 3 else "Reading package lists... Done"
             for n in range(2000)]
    assert not any(watch.take(line, now=n / 50) for n, line in enumerate(lines))
    # a step that waits and says so each second is slower than any reprinted menu
    watch = RepeatWatch()
    assert not any(watch.take("Waiting for the nodes to boot...", now=float(n)) for n in range(500))


def test_the_repeated_line_of_a_runaway_is_named():
    assert oscar_output.most_repeated(build_menu() * 30) == "Select one"
    assert oscar_output.most_repeated(["a", "b", "c"] * 3) is None


def test_a_module_that_does_not_compile_is_named_by_its_first_error():
    # OSCAR's git tree: lib/OSCAR/MAC.pm line 63 holds "$Revision$", which only its packaging replaces
    lines = ["== Running OSCAR CLI Installer",
             'Bareword found where operator expected at /opt/oscar/lib/OSCAR/MAC.pm line 334, near "sortclients '
             'SIS::NewDB::list_client"', "\t(Do you need to predeclare sortclients?)",
             'Global symbol "$Revision" requires explicit package name (did you forget to declare "my $Revision"?) '
             "at /opt/oscar/lib/OSCAR/MAC.pm line 63.",
             "Final $ should be \\$ or $name at /opt/oscar/lib/OSCAR/MAC.pm line 63, within string",
             'syntax error at /opt/oscar/lib/OSCAR/MAC.pm line 63, near "= "$Revision$""',
             'syntax error at /opt/oscar/lib/OSCAR/MAC.pm line 334, near "sortclients SIS::NewDB::list_client"',
             "Compilation failed in require at /opt/oscar/lib/OSCAR/CLI_MAC.pm line 61.",
             "BEGIN failed--compilation aborted at /opt/oscar/lib/OSCAR/CLI_MAC.pm line 61.",
             "Compilation failed in require at ./main_cli line 28.",
             "BEGIN failed--compilation aborted at ./main_cli line 28.",
             "Oscar Wizard failed to run successfully at /opt/oscar/install_cluster line 348."]
    assert failure_cause(lines) == ('Global symbol "$Revision" requires explicit package name (did you forget to '
                                    'declare "my $Revision"?) at /opt/oscar/lib/OSCAR/MAC.pm line 63.')
    # scripts/cli/build_oscar_image_cli line 217 against the prototype of ImageMgt.pm line 141
    lines = [subsection("Running command: /opt/oscar/scripts/cli/build_oscar_image_cli --file /i/b eth1"),
             "Too many arguments for OSCAR::ImageMgt::do_post_image_creation at "
             '/opt/oscar/scripts/cli/build_oscar_image_cli line 217, near "]) "',
             "Execution of /opt/oscar/scripts/cli/build_oscar_image_cli aborted due to compilation errors.",
             "Failed on Step 4 - Build OSCAR Client Image at ./main_cli line 164.", WRAPPER]
    assert describe_failure(lines, StepSeen(4, False), 255) == (
        "OSCAR failed in step 4 - Build OSCAR Client Image: Too many arguments for "
        'OSCAR::ImageMgt::do_post_image_creation at /opt/oscar/scripts/cli/build_oscar_image_cli line 217, near "]) "')


def test_perls_warnings_at_the_start_of_main_cli_are_not_causes():
    # at OSCAR's default verbosity main_cli (-w) prints these before anything of its own
    lines = ["Subroutine name redefined at /opt/oscar/lib/OSCAR/OCA/XMIT_Deploy/XMIT_None.pm line 37.",
             "Negative repeat count does nothing at /opt/oscar/lib/OSCAR/Logger.pm line 121.",
             "Undefined subroutine &WizardEnv::update_env called at ./main_cli line 156.", WRAPPER]
    assert failure_cause(lines) == "Undefined subroutine &WizardEnv::update_env called at ./main_cli line 156."
    assert failure_cause(lines[:2] + [WRAPPER]) == WRAPPER
