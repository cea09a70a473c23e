"""pydatatask: data pipelines defined by where their data lives.

Every public name is importable from here. Core names import eagerly; the backends that
need optional packages, and the command line (which needs rich), resolve lazily on first
use (PEP 562), so ``import pydatatask`` needs none of them and stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pydatatask.codecs import Codec
from pydatatask.errors import (
    BackendError,
    BackendUnavailableError,
    CodecError,
    ConfigurationError,
    InputError,
    InvalidJobIdError,
    JobClaimedError,
    JobFailedError,
    JobNotFoundError,
    JobNotReadyError,
    LifecycleError,
    MissingDependencyError,
    PipelineValidationError,
    ProcessExitError,
    PydatataskError,
    QuotaExceededError,
    UnstorableValueError,
)
from pydatatask.executor.local import LocalLinuxManager
from pydatatask.link import Link
from pydatatask.pipeline import Pipeline
from pydatatask.quota import Quota, ResourceManager, Resources
from pydatatask.report import RunReport
from pydatatask.repository.base import BlobRepository, MetadataRepository, Repository
from pydatatask.repository.combinators import (
    AggregateAndRepository,
    AggregateOrRepository,
    BlockingRepository,
    MapRepository,
    RelatedItemRepository,
)
from pydatatask.repository.filesystem import (
    DirectoryRepository,
    FileRepository,
    YamlMetadataFileRepository,
)
from pydatatask.repository.memory import InProcessBlobRepository, InProcessMetadataRepository
from pydatatask.running import run
from pydatatask.session import Resource, Session
from pydatatask.target import Result, materialize
from pydatatask.task.base import Task
from pydatatask.task.function import ExecutorTask, FunctionTask, InProcessSyncTask
from pydatatask.task.process import STDOUT, ProcessTask
from pydatatask.task.retry import RetryPolicy

# After every import of the package ``pydatatask.task``: the name is the decorator's.
from pydatatask.task.values import ValueTask, task

if TYPE_CHECKING:
    from pydatatask.cli import main
    from pydatatask.executor.docker import DockerContainerManager
    from pydatatask.executor.kubernetes import PodManager
    from pydatatask.executor.slurm import SlurmManager
    from pydatatask.executor.ssh import SSHLinuxManager
    from pydatatask.repository.docker import DockerRegistryClient, DockerRepository
    from pydatatask.repository.mongodb import MongoMetadataRepository
    from pydatatask.repository.s3 import (
        S3BucketInfo,
        S3BucketRepository,
        YamlMetadataS3Repository,
    )
    from pydatatask.task.container import ContainerTask
    from pydatatask.task.kubernetes import KubeFunctionTask, KubeTask
    from pydatatask.task.slurm import SlurmTask

__version__ = "0.5.0"
"""The package's version; packaging metadata and the documentation read it from here."""

# The public API: each name and the module it is imported from, sorted by name. Names
# imported above are core; every other name resolves lazily from its module.
_PUBLIC: dict[str, str] = {
    "AggregateAndRepository": "pydatatask.repository.combinators",
    "AggregateOrRepository": "pydatatask.repository.combinators",
    "BackendError": "pydatatask.errors",
    "BackendUnavailableError": "pydatatask.errors",
    "BlobRepository": "pydatatask.repository.base",
    "BlockingRepository": "pydatatask.repository.combinators",
    "Codec": "pydatatask.codecs",
    "CodecError": "pydatatask.errors",
    "ConfigFileError": "pydatatask.config",
    "ConfigurationError": "pydatatask.errors",
    "ContainerTask": "pydatatask.task.container",
    "DirectoryRepository": "pydatatask.repository.filesystem",
    "DockerContainerManager": "pydatatask.executor.docker",
    "DockerRegistryClient": "pydatatask.repository.docker",
    "DockerRepository": "pydatatask.repository.docker",
    "ExecutorTask": "pydatatask.task.function",
    "FileRepository": "pydatatask.repository.filesystem",
    "FunctionTask": "pydatatask.task.function",
    "HiveDatasetRepository": "pydatatask.repository.dataset",
    "InProcessBlobRepository": "pydatatask.repository.memory",
    "InProcessMetadataRepository": "pydatatask.repository.memory",
    "InProcessSyncTask": "pydatatask.task.function",
    "InputError": "pydatatask.errors",
    "InvalidJobIdError": "pydatatask.errors",
    "JobClaimedError": "pydatatask.errors",
    "JobFailedError": "pydatatask.errors",
    "JobNotFoundError": "pydatatask.errors",
    "JobNotReadyError": "pydatatask.errors",
    "KubeFunctionTask": "pydatatask.task.kubernetes",
    "KubeTask": "pydatatask.task.kubernetes",
    "LifecycleError": "pydatatask.errors",
    "Link": "pydatatask.link",
    "LocalLinuxManager": "pydatatask.executor.local",
    "MapRepository": "pydatatask.repository.combinators",
    "MetadataRepository": "pydatatask.repository.base",
    "MissingDependencyError": "pydatatask.errors",
    "MongoMetadataRepository": "pydatatask.repository.mongodb",
    "Pipeline": "pydatatask.pipeline",
    "PipelineValidationError": "pydatatask.errors",
    "PodManager": "pydatatask.executor.kubernetes",
    "ProcessExitError": "pydatatask.errors",
    "ProcessTask": "pydatatask.task.process",
    "PydatataskError": "pydatatask.errors",
    "Quota": "pydatatask.quota",
    "QuotaExceededError": "pydatatask.errors",
    "RelatedItemRepository": "pydatatask.repository.combinators",
    "Repository": "pydatatask.repository.base",
    "Resource": "pydatatask.session",
    "ResourceManager": "pydatatask.quota",
    "Resources": "pydatatask.quota",
    "Result": "pydatatask.target",
    "RetryPolicy": "pydatatask.task.retry",
    "RunReport": "pydatatask.report",
    "S3BucketInfo": "pydatatask.repository.s3",
    "S3BucketRepository": "pydatatask.repository.s3",
    "S3HiveDatasetRepository": "pydatatask.repository.dataset",
    "SSHLinuxManager": "pydatatask.executor.ssh",
    "STDOUT": "pydatatask.task.process",
    "ScheduleRepository": "pydatatask.repository.schedule",
    "Session": "pydatatask.session",
    "SlurmManager": "pydatatask.executor.slurm",
    "SlurmTask": "pydatatask.task.slurm",
    "Task": "pydatatask.task.base",
    "UnstorableValueError": "pydatatask.errors",
    "ValueTask": "pydatatask.task.values",
    "YamlMetadataFileRepository": "pydatatask.repository.filesystem",
    "YamlMetadataS3Repository": "pydatatask.repository.s3",
    "load_pipeline": "pydatatask.config",
    "main": "pydatatask.cli",
    "materialize": "pydatatask.target",
    "run": "pydatatask.running",
    "task": "pydatatask.task.values",
}

__all__ = sorted(_PUBLIC)

# The public names not imported above, each resolved from its module on first use.
_LAZY: dict[str, str] = {name: module for name, module in _PUBLIC.items() if name not in globals()}

# pydatatask 0.4's top-level functions: still resolved, but not public (not in __all__ or
# dir()) and not kept in the module's namespace, so that every use meets its
# DeprecationWarning. docs/upgrading.rst names their replacements.
_DEPRECATED: dict[str, str] = {
    name: "pydatatask.compat"
    for name in (
        "cat_data",
        "delete_data",
        "inject_data",
        "launch",
        "list_data",
        "print_status",
        "print_trace",
        "update",
    )
}


def __getattr__(name: str) -> Any:
    """Import a lazily resolved public name from its module, once.

    pydatatask 0.4's deprecated functions (``update``, ``launch``, ...) resolve here too.

    :raises MissingDependencyError: when the name's backend needs an extra that is not
        installed.
    :raises AttributeError: for a name that is not public.
    """
    if name in _DEPRECATED:
        return getattr(importlib.import_module(_DEPRECATED[name]), name)
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pydatatask' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names, lazy ones included."""
    return list(__all__)
