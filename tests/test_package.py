"""The package's public surface and its import cost."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import pydatatask

OPTIONAL_BACKEND_MODULES = [
    "rich",
    "aiobotocore",
    "botocore",
    "motor",
    "pymongo",
    "aiodocker",
    "kubernetes_asyncio",
    "asyncssh",
]

# The names api.md promises, followed by the library's own contracts and errors.
EXPECTED_PUBLIC_NAMES = {
    "Session",
    "Resource",
    "Repository",
    "MetadataRepository",
    "BlobRepository",
    "InProcessMetadataRepository",
    "InProcessBlobRepository",
    "FileRepository",
    "DirectoryRepository",
    "YamlMetadataFileRepository",
    "AggregateAndRepository",
    "AggregateOrRepository",
    "BlockingRepository",
    "RelatedItemRepository",
    "MapRepository",
    "PydatataskError",
    "JobNotFoundError",
    "InvalidJobIdError",
    "ConfigurationError",
    "PipelineValidationError",
    "QuotaExceededError",
    "LifecycleError",
    "MissingDependencyError",
    "BackendError",
    "BackendUnavailableError",
    "Link",
    "Task",
    "FunctionTask",
    "InProcessSyncTask",
    "ExecutorTask",
    "RetryPolicy",
    "Pipeline",
    "RunReport",
    "run",
    "main",
    "InputError",
    "JobNotReadyError",
    "JobClaimedError",
    "S3BucketRepository",
    "YamlMetadataS3Repository",
    "MongoMetadataRepository",
    "ContainerTask",
    "DockerContainerManager",
    "DockerRegistryClient",
    "DockerRepository",
    "SSHLinuxManager",
    "ProcessTask",
    "STDOUT",
    "LocalLinuxManager",
    "Resources",
    "ResourceManager",
    "Quota",
    "ProcessExitError",
    "KubeTask",
    "KubeFunctionTask",
    "PodManager",
}


def test_all_is_the_documented_api() -> None:
    assert set(pydatatask.__all__) == EXPECTED_PUBLIC_NAMES
    for name in pydatatask.__all__:
        try:
            value = getattr(pydatatask, name)
        except pydatatask.MissingDependencyError as missing:
            problem = str(missing)
        else:
            assert value is not None
            continue
        # Without its extra, a backend name says what to install.
        assert name in pydatatask._LAZY, name
        assert "pip install 'pydatatask[" in problem


def test_import_loads_no_optional_backend() -> None:
    code = (
        "import sys, pydatatask\n"
        f"loaded = [m for m in {OPTIONAL_BACKEND_MODULES!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_error_hierarchy_matches_builtins() -> None:
    assert issubclass(pydatatask.JobNotFoundError, KeyError)
    assert issubclass(pydatatask.InvalidJobIdError, ValueError)
    assert issubclass(pydatatask.LifecycleError, RuntimeError)
    assert issubclass(pydatatask.MissingDependencyError, ImportError)
    for name in EXPECTED_PUBLIC_NAMES:
        if name.endswith("Error"):
            assert issubclass(getattr(pydatatask, name), pydatatask.PydatataskError)


def test_missing_dependency_names_the_extra() -> None:
    from pydatatask._optional import import_optional

    with pytest.raises(ImportError, match=re.escape("pip install 'pydatatask[s3]'")) as caught:
        import_optional("surely_not_installed_package_xyz", "s3")
    assert isinstance(caught.value, pydatatask.MissingDependencyError)
