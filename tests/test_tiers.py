"""The tier rules of tests/conftest.py: a fast-tier test that asks for a service fixture fails
collection, naming both, and one that starts a process (in a fixture too) fails, even when the code
catches the error."""

from __future__ import annotations

import pytest

INNER_CONFTEST = """
from tests.conftest import (  # the rules under test, and a service fixture to ask for
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
    ray_local,
)
"""


def test_a_service_fixture_outside_e2e_fails_collection(pytester: pytest.Pytester):
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(
        test_inner="""
        import pytest

        def test_wants_ray(ray_local):
            pass

        @pytest.mark.e2e
        def test_allowed(ray_local):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_inner.py::test_wants_ray uses ray_local*"])
    assert "test_allowed" not in result.stderr.str()


def test_starting_a_process_outside_e2e_fails_even_when_caught(pytester: pytest.Pytester):
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(
        test_inner="""
        import subprocess

        import pytest

        def test_runs_a_command():
            subprocess.run(["true"], check=True)

        def test_swallows_the_error():
            try:
                subprocess.Popen(["true"]).wait()
            except Exception:
                pass

        def test_starts_nothing():
            assert True

        @pytest.fixture(scope="module")
        def a_server():
            subprocess.Popen(["true"]).wait()

        def test_through_a_fixture(a_server):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2, errors=1)
    result.stdout.fnmatch_lines(["*test_runs_a_command started a process*mark*e2e*"])
    result.stdout.fnmatch_lines(["*test_swallows_the_error started a process*mark it `pytest.mark.e2e`*"])
    result.stdout.fnmatch_lines(["*test_through_a_fixture started a process*"])


@pytest.mark.parametrize(
    ("marks", "workers"), [("not e2e", 2), ("e2e", 0), ("e2e and not slow", 0)], ids=["fast", "e2e", "e2e-subset"]
)
def test_the_end_to_end_tier_runs_one_test_at_a_time_whatever_n_says(pytester: pytest.Pytester, marks, workers):
    from tests import conftest

    config = pytester.parseconfig("-m", marks, "-n", "2", "-p", "xdist")
    conftest.pytest_configure(config)
    assert config.option.numprocesses == workers
    if workers == 0:  # xdist's own pytest_configure, which runs last, then starts no worker
        assert (config.option.dist, config.option.tx) == ("no", [])
