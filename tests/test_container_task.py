"""ContainerTask against a real Docker engine (dockerd on a private socket)."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

pytest.importorskip("aiodocker")
pytest.importorskip("aiohttp")

import pydatatask as pdt
from pydatatask.executor.docker import LABEL_APP, DockerContainerManager
from pydatatask.quota import ResourceManager, Resources
from pydatatask.repository.docker import DockerRegistryClient, DockerRepository
from pydatatask.task.container import ContainerTask
from pydatatask.task.process import STDOUT
from tests.servers.docker import (
    DockerEngine,
    RegistryServer,
    busybox_rootfs_tar,
    layer_of,
    push_image,
)

pytestmark = pytest.mark.backend

NO_LIMIT = Resources()


def engine_session(engine: DockerEngine) -> tuple[pdt.Session, Callable[[], Any]]:
    session = pdt.Session()

    @session.resource
    async def docker() -> AsyncIterator[Any]:
        import aiodocker

        async with aiodocker.Docker(url=engine.host) as client:
            yield client

    return session, docker


def new_manager(docker: Callable[[], Any]) -> DockerContainerManager:
    return DockerContainerManager(f"test-{uuid.uuid4().hex[:8]}", docker)


async def containers_of(manager: DockerContainerManager) -> list[Any]:
    found: list[Any] = await manager.docker.containers.list(
        all=True, filters={"label": [f"{LABEL_APP}={manager.app}"]}
    )
    return found


async def test_twenty_jobs_stream_stdin_stdout_stderr(
    docker_engine: DockerEngine, busybox_image: str
) -> None:
    session, docker = engine_session(docker_engine)
    manager = new_manager(docker)
    jobs = [f"job-{index:02d}" for index in range(20)]
    inputs = pdt.InProcessBlobRepository(
        {job: b"\x00\xff binary " + job.encode() + b"\n" for job in jobs}
    )
    labels = pdt.InProcessMetadataRepository({job: f"label of {job}" for job in jobs})
    stdout, stderr = pdt.InProcessBlobRepository(), pdt.InProcessBlobRepository()
    task = ContainerTask(
        "echoer",
        manager,
        None,
        NO_LIMIT,
        image=busybox_image,
        template=textwrap.dedent(
            """
            cat
            echo {{ labels | shquote }} {{ job | shquote }} >&2
            case {{ job | shquote }} in job-07) exit 3;; esac
            """
        ),
        stdin=inputs,
        stdout=stdout,
        stderr=stderr,
    )
    task.link("labels", labels, is_input=True)
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        report = await pdt.run(pipeline, timeout=90)
        assert report.launched == 20
        assert await containers_of(manager) == [] or await _eventually_no_containers(manager)
    records = task.done.data  # type: ignore[attr-defined]
    assert set(records) == set(jobs)
    for job in jobs:
        record = records[job]
        assert stdout.data[job] == b"\x00\xff binary " + job.encode() + b"\n"
        assert stderr.data[job] == f"label of {job} {job}\n".encode()
        assert record["attempt"] == 1
        assert record["start_time"]
        assert record["end_time"]
        if job == "job-07":
            assert record["success"] is False
            assert record["exit_code"] == 3
            assert "status 3" in record["exception"]
        else:
            assert record["success"] is True
            assert record["exit_code"] == 0


async def _eventually_no_containers(manager: DockerContainerManager) -> bool:
    for _ in range(50):
        if not await containers_of(manager):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_stderr_merges_into_stdout(docker_engine: DockerEngine, busybox_image: str) -> None:
    session, docker = engine_session(docker_engine)
    stdout = pdt.InProcessBlobRepository()
    task = ContainerTask(
        "merged",
        new_manager(docker),
        None,
        NO_LIMIT,
        image=busybox_image,
        template="echo out; sleep 0.1; echo err >&2",
        stdout=stdout,
        stderr=STDOUT,
        ready=pdt.InProcessMetadataRepository({"only": 1}),
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=30)
    assert stdout.data["only"] == b"out\nerr\n"


async def test_timeout_kills_the_container(docker_engine: DockerEngine, busybox_image: str) -> None:
    session, docker = engine_session(docker_engine)
    manager = new_manager(docker)
    task = ContainerTask(
        "sleeper",
        manager,
        None,
        NO_LIMIT,
        image=busybox_image,
        template="sleep 60",
        ready=pdt.InProcessMetadataRepository({"slow": 1}),
        timeout=1.5,
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=30)
        assert await _eventually_no_containers(manager)
    record = task.done.data["slow"]  # type: ignore[attr-defined]
    assert record["success"] is False
    assert record["timeout"] is True


async def test_kill_removes_a_running_container(
    docker_engine: DockerEngine, busybox_image: str
) -> None:
    session, docker = engine_session(docker_engine)
    manager = new_manager(docker)
    task = ContainerTask(
        "victim",
        manager,
        None,
        NO_LIMIT,
        image=busybox_image,
        template="sleep 60",
        ready=pdt.InProcessMetadataRepository({"doomed": 1}),
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        running = asyncio.create_task(pdt.run(pipeline, timeout=30))
        for _ in range(100):
            handle = await manager.find("victim", "doomed")
            if handle is not None and handle.state == "running":
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the container did not start")
        assert await task.kill("doomed") is True
        assert await manager.find("victim", "doomed") is None
        assert await task.kill("doomed") is False
        await running
    assert task.done.data["doomed"]["success"] is False  # type: ignore[attr-defined]


# The container's own CPU and memory limits, from cgroup v2 or else cgroup v1.
LIMITS = """
if [ -e /sys/fs/cgroup/cpu.max ]; then
    cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max
else
    cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes
fi
"""


async def test_quota_limits_concurrency_and_sets_limits(
    docker_engine: DockerEngine, busybox_image: str
) -> None:
    session, docker = engine_session(docker_engine)
    stdout = pdt.InProcessBlobRepository()
    quota = ResourceManager(Resources.parse(cpu="2", mem="1Gi"))
    task = ContainerTask(
        "limited",
        new_manager(docker),
        quota,
        Resources.parse(cpu="1", mem="128Mi"),
        image=busybox_image,
        template=LIMITS + "sleep 0.7",
        stdout=stdout,
        ready=pdt.InProcessMetadataRepository({f"q{index}": 1 for index in range(6)}),
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        await pdt.run(pipeline, timeout=60)
    records = task.done.data  # type: ignore[attr-defined]
    assert all(record["success"] for record in records.values())
    spans = [(record["start_time"], record["end_time"]) for record in records.values()]
    most = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert most <= 2
    assert quota.used.cpu == 0
    limits = stdout.data["q0"].decode().split()
    assert limits in (["100000", "100000", str(128 << 20)], ["100000", str(128 << 20)])


async def test_build_then_run_pipeline(
    docker_engine: DockerEngine, docker_registry: RegistryServer, busybox_image: str
) -> None:
    session, docker = engine_session(docker_engine)

    @session.resource
    async def registry() -> AsyncIterator[DockerRegistryClient]:
        async with DockerRegistryClient(timeout=30) as client:
            yield client

    images = DockerRepository(registry, docker_registry.domain, f"built/{uuid.uuid4().hex[:8]}")
    sources = pdt.InProcessMetadataRepository({"red": "roses", "blue": "violets"})
    base = busybox_rootfs_tar()

    @pdt.InProcessSyncTask("build", pdt.InProcessMetadataRepository())
    async def build(job: str, sources: Any, images: DockerRepository) -> None:
        message = f"{job} {await sources.info(job)}\n".encode()
        layer = layer_of({"message.txt": message}, base=base)
        await push_image(images.client(), images.base_url, job, [layer])

    build.link("sources", sources, is_input=True)
    build.link("images", images, is_output=True)
    stdout = pdt.InProcessBlobRepository()
    run = ContainerTask(
        "use",
        new_manager(docker),
        None,
        NO_LIMIT,
        image="{{ images }}",
        template="cat /message.txt",
        stdout=stdout,
    )
    run.link("images", images, is_input=True)
    pipeline = pdt.Pipeline([build, run], session)
    async with pipeline:
        report = await pdt.run(pipeline, timeout=90)
        assert report.failed == 0, run.done.data  # type: ignore[attr-defined]
        assert await images.ids() == {"red", "blue"}
    assert stdout.data == {"red": b"red roses\n", "blue": b"blue violets\n"}


async def test_manager_may_be_a_session_accessor(
    docker_engine: DockerEngine, busybox_image: str
) -> None:
    session, docker = engine_session(docker_engine)
    app = f"test-{uuid.uuid4().hex[:8]}"

    @session.resource
    async def containers() -> AsyncIterator[DockerContainerManager]:
        yield DockerContainerManager(app, docker)

    stdout = pdt.InProcessBlobRepository()
    task = ContainerTask(
        "via_accessor",
        containers,
        None,
        NO_LIMIT,
        image=busybox_image,
        template="echo hello {{ job }}",
        stdout=stdout,
        ready=pdt.InProcessMetadataRepository({"one": 1}),
    )
    pipeline = pdt.Pipeline([task], session)
    async with pipeline:
        report = await pdt.run(pipeline, timeout=90)
    assert (report.succeeded, report.failed) == (1, 0)
    assert stdout.data["one"] == b"hello one\n"


async def test_unknown_names_in_the_image_template_show_on_open(
    docker_engine: DockerEngine,
) -> None:
    session, docker = engine_session(docker_engine)
    task = ContainerTask(
        "misnamed",
        new_manager(docker),
        None,
        NO_LIMIT,
        image="{{ imagse }}",
        template="true",
        ready=pdt.InProcessMetadataRepository({"one": 1}),
    )
    task.link("images", pdt.InProcessMetadataRepository(), is_input=True)
    with pytest.raises(pdt.ConfigurationError, match=r"its image template uses 'imagse'"):
        async with pdt.Pipeline([task], session):
            pass
