"""What a pod says about its job: its name and labels, requests, status and handle.

These are plain functions of pod objects (in the API's JSON form); they need no client,
so tasks may use them before any request is made. See :mod:`pydatatask.executor.kubernetes`
for the :class:`~pydatatask.executor.kubernetes.PodManager` that creates the pods.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydatatask.errors import ConfigurationError
from pydatatask.executor.protocol import ExitStatus, JobHandle
from pydatatask.quota import Resources

__all__ = [
    "ANNOTATION_JOB",
    "IMAGE_FAILURES",
    "LABEL_APP",
    "LABEL_ATTEMPT",
    "LABEL_JOB_HASH",
    "LABEL_TASK",
    "PodHandle",
    "PodReport",
    "PodSpec",
    "exit_status",
    "label_value",
    "pod_requests",
]

LABEL_APP = "pydatatask.app"
LABEL_TASK = "pydatatask.task"
LABEL_JOB_HASH = "pydatatask.job-hash"
LABEL_ATTEMPT = "pydatatask.attempt"
ANNOTATION_JOB = "pydatatask.job"

IMAGE_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
"""Waiting reasons that end a job at once, since its image will not come by waiting."""

_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?")


def digest(*parts: str) -> str:
    """Return the SHA-256 of ``parts`` joined by NUL, in hex."""
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def label_value(text: str) -> str:
    """Return ``text`` if it is a valid label value, else a valid form of it with a hash."""
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text):
        return text
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("_.-")[:50].strip("_.-")
    return f"{readable}-{digest(text)[:10]}" if readable else digest(text)[:12]


def pod_requests(manifest: Mapping[str, Any]) -> Resources:
    """Return the CPU and memory a pod manifest requests, as the scheduler counts them.

    That is the sum over the containers, or the largest init container if that is more.

    :raises ConfigurationError: for a request that is not a quantity.
    """
    spec = manifest.get("spec") or {}

    def requests(container: Any) -> Resources:
        wanted = ((container or {}).get("resources") or {}).get("requests") or {}
        return Resources.parse(wanted.get("cpu", 0), wanted.get("memory", 0))

    total = Resources()
    for container in spec.get("containers") or []:
        total = total + requests(container)
    for container in spec.get("initContainers") or []:
        one = requests(container)
        total = Resources(max(total.cpu, one.cpu), max(total.memory, one.memory))
    return total


@dataclass(frozen=True)
class PodReport:
    """What a pod's status says about its job; ``reason`` is set once the job has ended."""

    name: str
    job: str | None
    attempt: int
    phase: str
    reason: str | None
    """``Succeeded``, ``Failed``, ``Evicted``, an image failure, ...; None while it runs."""
    exit_code: int | None
    message: str
    node: str | None
    image: str | None
    created: str | None
    started: str | None
    finished: str | None
    terminating: bool
    containers: list[str] = field(default_factory=list)
    requests: Resources = field(default_factory=Resources)

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodReport:
        """Read a pod object (in the API's JSON form)."""
        metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        status = pod.get("status") or {}
        labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
        statuses = [*(status.get("initContainerStatuses") or [])]
        statuses += status.get("containerStatuses") or []
        phase = str(status.get("phase") or "Pending")
        terminated = [
            (item.get("state") or {}).get("terminated") or {}
            for item in statuses
            if (item.get("state") or {}).get("terminated")
        ]
        failing = [state for state in terminated if state.get("exitCode")]
        last = (failing or terminated or [{}])[0]
        reason, message = None, str(status.get("message") or last.get("message") or "")
        if phase == "Succeeded":
            reason = "Succeeded"
        elif phase == "Failed":
            reason = str(status.get("reason") or "Failed")
        else:
            for item in statuses:
                waiting = (item.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in IMAGE_FAILURES:
                    reason, message = str(waiting["reason"]), str(waiting.get("message") or "")
                    break
        try:
            attempt = int(labels.get(LABEL_ATTEMPT, "1"))
        except ValueError:
            attempt = 1
        containers = [str(item.get("name")) for item in spec.get("containers") or []]
        images = [str(item.get("image")) for item in spec.get("containers") or []]
        exit_code = last.get("exitCode")
        return cls(
            name=str(metadata.get("name")),
            job=annotations.get(ANNOTATION_JOB),
            attempt=attempt,
            phase=phase,
            reason=reason,
            exit_code=int(exit_code)
            if exit_code is not None
            else (0 if phase == "Succeeded" else None),
            message=message,
            node=spec.get("nodeName"),
            image=", ".join(images) or None,
            created=metadata.get("creationTimestamp"),
            started=status.get("startTime"),
            finished=max((str(state.get("finishedAt")) for state in terminated), default=None),
            terminating=metadata.get("deletionTimestamp") is not None,
            containers=containers,
            requests=_requests_or_zero(pod),
        )

    @property
    def ended(self) -> bool:
        """Whether the job in this pod has ended, one way or another."""
        return self.reason is not None


def _requests_or_zero(pod: Mapping[str, Any]) -> Resources:
    try:
        return pod_requests(pod)
    except ConfigurationError:
        return Resources()


@dataclass(frozen=True)
class PodSpec:
    """What to run: a rendered pod manifest, and variables for every container."""

    manifest: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodHandle(JobHandle):
    """One job's pod: its name and uid, and what it runs and requests."""

    name: str
    uid: str = ""
    containers: tuple[str, ...] = field(default=(), compare=False)
    requests: Resources = field(default_factory=Resources, compare=False)

    @classmethod
    def of(cls, task: str, job: str, pod: Mapping[str, Any]) -> PodHandle:
        """Describe a pod object (in the API's JSON form) of ``job``."""
        report = PodReport.of(pod)
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        return cls(
            task, job, report.attempt, report.name, uid, tuple(report.containers), report.requests
        )

    def as_record(self) -> dict[str, Any]:
        """Return the pod's name, uid and containers."""
        return {"pod": self.name, "uid": self.uid, "containers": list(self.containers)}


def exit_status(report: PodReport) -> ExitStatus:
    """Say how a pod that ended went, with its details for the done record."""
    details: dict[str, Any] = {
        "pod": report.name,
        "reason": report.reason,
        "exit_code": report.exit_code,
        "node": report.node,
        "image": report.image,
        "pod_created": report.created,
        "pod_started": report.started,
        "pod_finished": report.finished,
    }
    if report.message:
        details["message"] = report.message
    reason = None if report.reason == "Succeeded" else report.reason
    return ExitStatus(report.exit_code, reason, report.message, details)


def deleted(name: str) -> ExitStatus:
    """Say that the pod ``name`` disappeared, or is deleted, before it ended."""
    return ExitStatus(
        None,
        "Deleted",
        "the pod was deleted before it ended",
        {"pod": name, "reason": "Deleted"},
    )
