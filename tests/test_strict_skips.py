"""EMOTK_TEST_STRICT=1 (set by .ci/run) turns every skip into a failure except those that need ../shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

PROBE = '''
import pytest

def test_needs_a_tool():
    pytest.skip("espeak-ng is not installed")

def test_needs_shared_data():
    pytest.skip("../shared/data/ravdess is not available")

@pytest.mark.skipif(True, reason="package absent")
def test_marked():
    pass

def test_runs():
    assert sum([1, 2]) == 3  # a probe test that passes
'''


def _run_probe(tmp_path: Path, strict: bool) -> str:
    (tmp_path / "conftest.py").write_text(  # the suite's conftest, loaded under another module name
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('emotk_suite_conftest', {str(TESTS / 'conftest.py')!r})\n"
        "suite = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(suite)\n"
        "pytest_runtest_makereport = suite.pytest_runtest_makereport\n")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "EMOTK_TEST_STRICT": "1" if strict else "0"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
                          "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    return res.stdout.strip().splitlines()[-1]


def test_strict_mode_fails_skips_except_shared_data(tmp_path):
    last = _run_probe(tmp_path, strict=True)
    assert "1 failed" in last and "1 error" in last and "1 skipped" in last and "1 passed" in last, last


def test_without_strict_mode_skips_stay_skips(tmp_path):
    last = _run_probe(tmp_path, strict=False)
    assert "3 skipped" in last and "1 passed" in last and "failed" not in last, last
