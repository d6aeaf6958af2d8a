"""Shared set-up of the Python module's tests: the package from the build tree (PYTHONPATH, set
by ctest) and the CLI binary (TWOSED_CLI) for comparisons."""

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("TWOSED_CLI") or shutil.which("twosed")
    if not path or not os.path.exists(path):
        pytest.skip("the twosed CLI binary is not known (set TWOSED_CLI)")
    return path
