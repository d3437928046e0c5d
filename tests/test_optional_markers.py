"""The optional-package markers of tests/conftest.py, run by pytest on small test files: a test marked with a
family whose package cannot be imported is skipped with a reason naming the package and how to install it,
fails under RTRL_REQUIRE_OPTIONAL (as in `make test`), and runs where the package imports; the same for a
module that calls ``skip_module_without`` before importing the package."""
import pytest

import conftest

ABSENT = "rtrl_no_such_package_for_tests"
REASON = f"needs {ABSENT}: pip install 'rtrl[envs]' (No module named '{ABSENT}')"

MARKED = """
import pytest

@pytest.mark.absent
def test_needs_the_absent_package():
    pass

@pytest.mark.present
def test_needs_a_present_package():
    pass
"""

GUARDED = """
from conftest import skip_module_without

skip_module_without("absent")
import rtrl_no_such_package_for_tests

def test_never_collected():
    pass
"""


@pytest.fixture
def families(pytester, monkeypatch):
    """Two families for the small test files: 'absent' (a package that does not exist), 'present' (json)."""
    monkeypatch.setitem(conftest.OPTIONAL, "absent", ((ABSENT,), "envs"))
    monkeypatch.setitem(conftest.OPTIONAL, "present", (("json",), "envs"))
    conftest.missing_optional.cache_clear()
    pytester.makeini("[pytest]\nmarkers =\n    absent\n    present\n")
    yield
    conftest.missing_optional.cache_clear()


def run(pytester, monkeypatch, require: bool):
    if require:
        monkeypatch.setenv(conftest.REQUIRE_OPTIONAL, "1")
    else:
        monkeypatch.delenv(conftest.REQUIRE_OPTIONAL, raising=False)
    return pytester.runpytest("-v", "-rsE", "-p", "no:cacheprovider", plugins=[conftest])


def test_a_missing_package_skips_with_its_install_command(pytester, monkeypatch, families):
    pytester.makepyfile(MARKED)
    result = run(pytester, monkeypatch, require=False)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*::test_needs_the_absent_package SKIPPED*", "*::test_needs_a_present_package PASSED*"])
    assert "SKIPPED [1] " in result.stdout.str() and REASON in result.stdout.str()
    assert result.ret == 0


def test_a_missing_package_fails_when_required(pytester, monkeypatch, families):
    pytester.makepyfile(MARKED)
    result = run(pytester, monkeypatch, require=True)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*::test_needs_the_absent_package ERROR*", "*::test_needs_a_present_package PASSED*"])
    assert f"{REASON}; RTRL_REQUIRE_OPTIONAL is set" in result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_module_importing_a_missing_package_is_skipped_or_fails_when_required(pytester, monkeypatch, families):
    pytester.makepyfile(test_guarded=GUARDED, test_marked=MARKED)
    result = run(pytester, monkeypatch, require=False)
    result.assert_outcomes(passed=1, skipped=2)   # the guarded module and the marked test
    assert REASON in result.stdout.str() and result.ret == 0
    result = run(pytester, monkeypatch, require=True)
    result.assert_outcomes(errors=1)               # collecting the guarded module fails: nothing runs
    assert "ERROR collecting test_guarded.py" in result.stdout.str()
    assert f"{REASON}; RTRL_REQUIRE_OPTIONAL is set" in result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
