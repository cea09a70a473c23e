"""pydatatask: data pipelines defined by where their data lives.

Core names import eagerly; backends that need optional packages resolve lazily on first
use, so ``import pydatatask`` needs none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pydatatask.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    InputError,
    InvalidJobIdError,
    JobClaimedError,
    JobNotFoundError,
    JobNotReadyError,
    LifecycleError,
    MissingDependencyError,
    PipelineValidationError,
    ProcessExitError,
    PydatataskError,
    QuotaExceededError,
)
from pydatatask.executor.local import LocalLinuxManager
from pydatatask.link import Link
from pydatatask.pipeline import Pipeline
from pydatatask.quota import Quota, ResourceManager, Resources
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
from pydatatask.scheduler import RunReport, run
from pydatatask.session import Resource, Session
from pydatatask.task.base import Task
from pydatatask.task.function import ExecutorTask, FunctionTask, InProcessSyncTask
from pydatatask.task.process import STDOUT, ProcessTask
from pydatatask.task.retry import RetryPolicy

if TYPE_CHECKING:
    from pydatatask.cli import main
    from pydatatask.executor.docker import DockerContainerManager
    from pydatatask.executor.kubernetes import PodManager
    from pydatatask.executor.ssh import SSHLinuxManager
    from pydatatask.repository.docker import DockerRegistryClient, DockerRepository
    from pydatatask.repository.mongodb import MongoMetadataRepository
    from pydatatask.repository.s3 import S3BucketRepository, YamlMetadataS3Repository
    from pydatatask.task.container import ContainerTask
    from pydatatask.task.kubernetes import KubeFunctionTask, KubeTask

__version__ = "0.5.0"

# name -> module that defines it; imported on first attribute access (PEP 562).
_LAZY: dict[str, str] = {
    "main": "pydatatask.cli",
    "ContainerTask": "pydatatask.task.container",
    "DockerContainerManager": "pydatatask.executor.docker",
    "DockerRegistryClient": "pydatatask.repository.docker",
    "DockerRepository": "pydatatask.repository.docker",
    "SSHLinuxManager": "pydatatask.executor.ssh",
    "KubeFunctionTask": "pydatatask.task.kubernetes",
    "KubeTask": "pydatatask.task.kubernetes",
    "PodManager": "pydatatask.executor.kubernetes",
    "MongoMetadataRepository": "pydatatask.repository.mongodb",
    "S3BucketRepository": "pydatatask.repository.s3",
    "YamlMetadataS3Repository": "pydatatask.repository.s3",
}

__all__ = [
    "STDOUT",
    "AggregateAndRepository",
    "AggregateOrRepository",
    "BackendError",
    "BackendUnavailableError",
    "BlobRepository",
    "BlockingRepository",
    "ConfigurationError",
    "ContainerTask",
    "DirectoryRepository",
    "DockerContainerManager",
    "DockerRegistryClient",
    "DockerRepository",
    "ExecutorTask",
    "FileRepository",
    "FunctionTask",
    "InProcessBlobRepository",
    "InProcessMetadataRepository",
    "InProcessSyncTask",
    "InputError",
    "InvalidJobIdError",
    "JobClaimedError",
    "JobNotFoundError",
    "JobNotReadyError",
    "KubeFunctionTask",
    "KubeTask",
    "LifecycleError",
    "Link",
    "LocalLinuxManager",
    "MapRepository",
    "MetadataRepository",
    "MissingDependencyError",
    "MongoMetadataRepository",
    "Pipeline",
    "PipelineValidationError",
    "PodManager",
    "ProcessExitError",
    "ProcessTask",
    "PydatataskError",
    "Quota",
    "QuotaExceededError",
    "RelatedItemRepository",
    "Repository",
    "Resource",
    "ResourceManager",
    "Resources",
    "RetryPolicy",
    "RunReport",
    "S3BucketRepository",
    "SSHLinuxManager",
    "Session",
    "Task",
    "YamlMetadataFileRepository",
    "YamlMetadataS3Repository",
    "main",
    "run",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pydatatask' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
