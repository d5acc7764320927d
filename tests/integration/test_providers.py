"""`rebill providers` and `rebill providers check` against every platform's simulator."""

from __future__ import annotations

from tests.support.platforms import SECRET, SIMULATED
from tests.support.stack import Stack


def test_every_configured_platform_is_listed_with_its_tenant(stack: Stack) -> None:
    result = stack.cli("providers")

    assert result.exit_code == 0, result.output
    for name in SIMULATED:
        [line] = [line for line in result.output.splitlines() if line.startswith(name)]
        assert stack.platforms[name].base_url in line


def test_check_signs_in_to_each_platform_and_reads_one_page(stack: Stack) -> None:
    result = stack.cli("providers", "check")

    assert result.exit_code == 0, result.output
    assert sorted(line.split(":")[0] for line in result.output.splitlines()) == sorted(SIMULATED)
    assert all(": ok: " in line for line in result.output.splitlines())


def test_check_names_the_platform_that_refuses_and_prints_no_secret(stack: Stack) -> None:
    result = stack.cli(
        "providers", "check", env={"REBILL_ARIA_AUTH_KEY": "not-the-key", "REBILL_IMIS_PASSWORD": "nope"}
    )

    assert result.exit_code == 1, result.output
    lines = dict(line.split(": ", 1) for line in result.output.splitlines())
    assert lines["aria"].startswith("FAILED")
    assert lines["imis"].startswith("FAILED")
    assert lines["salesforce"].startswith("ok")
    assert "not-the-key" not in result.output
    assert "nope" not in result.output
    assert SECRET not in result.output


def test_an_unconfigured_platform_says_which_variables_it_needs(stack: Stack) -> None:
    result = stack.cli("providers", env={"REBILL_ENERGYCAP_API_KEY": ""})

    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("energycap")]
    assert "not configured: set REBILL_ENERGYCAP_API_KEY" in line
