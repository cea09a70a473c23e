"""The package's public surface and its import cost."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
import sys
from types import ModuleType

import pytest

import pydatatask

# Backend packages, and rich (for the command line) and pytest (for pydatatask.testing),
# which only the names that need them import.
OPTIONAL_BACKEND_MODULES = [
    "rich",
    "pytest",
    "pydatatask.testing",
    "aiobotocore",
    "botocore",
    "motor",
    "pymongo",
    "aiodocker",
    "kubernetes_asyncio",
    "asyncssh",
    "pyarrow",
    "pandas",
    "starlette",
    "uvicorn",
]

# Core dependencies that are slow to import, imported when first needed: jinja2 when
# the first template is parsed, yaml when the first value is written or read.
FIRST_USE_MODULES = ["jinja2", "yaml"]

# The modules whose names resolve on first use: optional backends, and the command line.
LAZY_MODULES = {
    "pydatatask.cli",
    "pydatatask.repository.schedule",
    "pydatatask.repository.dataset",
    "pydatatask.config",
    "pydatatask.executor.docker",
    "pydatatask.executor.kubernetes",
    "pydatatask.executor.ssh",
    "pydatatask.executor.slurm",
    "pydatatask.repository.docker",
    "pydatatask.repository.mongodb",
    "pydatatask.repository.s3",
    "pydatatask.task.container",
    "pydatatask.task.kubernetes",
    "pydatatask.task.slurm",
}

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
    "UnstorableValueError",
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
    "JobFailedError",
    "ConfigFileError",
    "HiveDatasetRepository",
    "ScheduleRepository",
    "S3HiveDatasetRepository",
    "load_pipeline",
    "CodecError",
    "Codec",
    "Result",
    "materialize",
    "task",
    "ValueTask",
    "S3BucketInfo",
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
    "SlurmTask",
    "SlurmManager",
    "KubeFunctionTask",
    "PodManager",
}


def test_public_table_is_sorted() -> None:
    names = list(pydatatask._PUBLIC)
    assert names == sorted(names)


def test_all_is_the_documented_api() -> None:
    assert pydatatask.__all__ == sorted(pydatatask._PUBLIC)
    assert set(pydatatask.__all__) == EXPECTED_PUBLIC_NAMES
    assert set(dir(pydatatask)) == EXPECTED_PUBLIC_NAMES


def test_every_public_name_resolves_from_its_module() -> None:
    for name, module_name in pydatatask._PUBLIC.items():
        try:
            module = importlib.import_module(module_name)
        except pydatatask.MissingDependencyError:
            # Without its extra, a backend name says what to install.
            assert name in pydatatask._LAZY, name
            with pytest.raises(ImportError, match=re.escape("pip install 'pydatatask[")):
                getattr(pydatatask, name)
            continue
        assert getattr(pydatatask, name) is getattr(module, name), name


def test_every_eager_import_is_public() -> None:
    imported = {
        name
        for name, value in vars(pydatatask).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    helpers = {"annotations", "TYPE_CHECKING", "Any"}
    assert imported - set(pydatatask._PUBLIC) == helpers


def test_only_the_lazy_names_wait_for_first_use() -> None:
    code = (
        "import pydatatask\n"
        "print(','.join(sorted(set(pydatatask._PUBLIC) - set(vars(pydatatask)))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert set(result.stdout.strip().split(",")) == set(pydatatask._LAZY)
    assert set(pydatatask._LAZY.values()) == LAZY_MODULES


def test_deprecated_names_resolve_but_are_not_public() -> None:
    import pydatatask.compat

    assert set(pydatatask._DEPRECATED) == set(pydatatask.compat.__all__)
    for name in pydatatask._DEPRECATED:
        assert getattr(pydatatask, name) is getattr(pydatatask.compat, name)
        assert name not in pydatatask.__all__
        assert name not in vars(pydatatask)  # resolved each time, never kept


def test_deprecated_names_load_no_optional_backend() -> None:
    code = (
        "import sys, pydatatask\n"
        "pydatatask.update\n"
        f"loaded = [m for m in {OPTIONAL_BACKEND_MODULES!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        pydatatask.Nonexistent  # noqa: B018


def test_version_is_single_sourced() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", pydatatask.__version__)
    assert importlib.metadata.version("pydatatask") == pydatatask.__version__


def test_import_loads_no_optional_backend() -> None:
    unwanted = [*OPTIONAL_BACKEND_MODULES, *FIRST_USE_MODULES]
    code = (
        "import sys, pydatatask\n"
        f"loaded = [m for m in {unwanted!r} if m in sys.modules]\n"
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
