"""pydatatask 0.4.7's own test suite, run against this library.

Pipelines written for 0.4 must keep working, and 0.4's suite is the most direct
witness. Its ``tests/`` folder comes from the 0.4.7 sdist on PyPI (downloaded with pip
once and kept in pytest's cache) and runs with pytest in a subprocess, with this
library importable as ``pydatatask`` and the S3 and MongoDB servers of our fixtures
behind the environment variables the suite reads. Its ``aioshutil`` test dependency is
installed next to it, also from PyPI. When PyPI cannot be reached, the test is skipped.

Left out: ``test_docker.py`` (it talks to Docker Hub), the Kubernetes test and the SSH
process test (they start a cluster or pull images with Docker). The other 12 tests pass
on 0.4.7 itself. Here every one of them must pass, except those in
:data:`KNOWN_DIFFERENCES`, which assert what this version changes on purpose and must
fail for that reason only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers.mongodb import MongoServer
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.backend

UPSTREAM = "pydatatask==0.4.7"
SUITE_DEPENDENCY = "aioshutil==1.6"
"""What the suite imports that this project does not install (the other imports are ours)."""
SDIST = "pydatatask-0.4.7.tar.gz"
PIP_TIMEOUT = 180.0
SUITE_TIMEOUT = 600.0
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

LEFT_OUT = [
    "--ignore=tests/test_docker.py",
    "--deselect=tests/test_kube.py::TestKube::test_kube",
    "--deselect=tests/test_process.py::TestSSHProcess::test_ssh_process",
]

PASSING_ON_047 = {
    "test_basic.TestBasic.test_metadata",
    "test_executor.TestExecutor.test_executor",
    "test_filesystem.TestFilesystem.test_case_insensitivity",
    "test_filesystem.TestFilesystem.test_directory",
    "test_filesystem.TestFilesystem.test_filesystem",
    "test_filesystem.TestFilesystem.test_yaml",
    "test_minio.TestMinio.test_minio",
    "test_mongodb.TestMongoDB.test_mongo",
    "test_process.TestLocalProcess.test_local_process",
    "test_related.TestRelated.test_related",
    "test_repo_base.TestRepoBase.test_derived",
    "test_repo_base.TestRepoBase.test_map",
}
"""The tests run here that pass against pydatatask 0.4.7 itself."""

KNOWN_DIFFERENCES = {
    # New done records say exit_code where 0.4 said return_code.
    "test_process.TestLocalProcess.test_local_process": '["return_code"] == 0',
    # info of a missing id in a metadata repository raises JobNotFoundError (0.4: {}).
    "test_minio.TestMinio.test_minio": 'repo_yaml.info("bar") == {}',
    # New documents are {_id, value}; the test reads the raw document (0.4's documents
    # still read back, and info of the deleted id raises, as for test_minio).
    "test_mongodb.TestMongoDB.test_mongo": 'find_one({"_id": "foo"}))["weh"]',
}
"""Tests that assert a deliberate difference (see docs/upgrading.rst), each with the
text its failure report holds, so that any other failure of theirs is noticed."""


def _pip(*args: str, cwd: Path) -> None:
    """Run pip; skip the test when it fails (PyPI out of reach)."""
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=PIP_TIMEOUT,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", "") or ""
        pytest.skip(f"PyPI cannot be reached (pip {args[0]} failed): {output.strip()[-300:]}")


@pytest.fixture(scope="module")
def upstream_suite(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Return a folder holding 0.4.7's ``tests/`` and, in ``deps/``, what they import."""
    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    folder = (
        cache.mkdir("pydatatask-0.4.7-suite")
        if cache is not None
        else tmp_path_factory.mktemp("pydatatask-0.4.7-suite")
    )
    if not (folder / SDIST).exists():
        _pip(
            "download", "--no-deps", "--no-binary", ":all:", UPSTREAM, "-d", str(folder), cwd=folder
        )
    if not (folder / "deps" / "aioshutil").exists():
        _pip("install", "--no-deps", "--target", str(folder / "deps"), SUITE_DEPENDENCY, cwd=folder)
    suite = folder / "suite"
    if not (suite / "tests").exists():
        unpacked = folder / "pydatatask-0.4.7"
        shutil.rmtree(unpacked, ignore_errors=True)  # what an interrupted run left
        with tarfile.open(folder / SDIST) as archive:
            members = [
                member
                for member in archive.getmembers()
                if member.name.startswith("pydatatask-0.4.7/tests/")
            ]
            archive.extractall(folder, members=members, filter="data")
        unpacked.rename(suite)
    return suite


def _outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """Read a JUnit XML report: ``{module.Class.test: (outcome, message)}``."""
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').removeprefix('tests.')}.{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error"}.get(child.tag, "skipped")
                message = f"{child.get('message', '')}\n{child.text or ''}"
                break
        outcomes[name] = (outcome, message)
    return outcomes


def _failing_lines(message: str) -> list[str]:
    """Return the lines of a pytest failure report that show where and why it failed."""
    return [line for line in message.splitlines() if line.startswith((">", "E "))]


def test_upstream_suite_passes(
    upstream_suite: Path, s3_server: S3Server, mongo_server: MongoServer, tmp_path: Path
) -> None:
    endpoint = urlsplit(s3_server.endpoint_url)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYDATATASK_TEST_", "PYTEST_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(upstream_suite.parent / "deps"), str(REPOSITORY_ROOT)]),
        PYDATATASK_TEST_MINIO_ENDPOINT=endpoint.netloc,
        PYDATATASK_TEST_MINIO_USERNAME=s3_server.access_key,
        PYDATATASK_TEST_MINIO_PASSWORD=s3_server.secret_key,
        PYDATATASK_TEST_MONGODB_URL=mongo_server.uri,
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "report.xml"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(upstream_suite),
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={report}",
            *LEFT_OUT,
            "tests",
        ],
        cwd=upstream_suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT,
        check=False,
    )
    assert report.exists(), (run.stdout + run.stderr)[-3000:]
    outcomes = _outcomes(report)
    passed = {name for name, (outcome, _) in outcomes.items() if outcome == "passed"}
    summary = {name: outcome for name, (outcome, _) in sorted(outcomes.items())}
    assert set(outcomes) == PASSING_ON_047, summary
    assert passed == PASSING_ON_047 - set(KNOWN_DIFFERENCES), {
        name: outcomes[name][1][-2000:] for name in PASSING_ON_047 - passed
    }
    for name, cause in KNOWN_DIFFERENCES.items():
        message = outcomes[name][1]
        assert any(cause in line for line in _failing_lines(message)), message[-2000:]
