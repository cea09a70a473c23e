"""Draw a pipeline as Mermaid or Graphviz DOT text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydatatask.errors import InputError
from pydatatask.link import Link
from pydatatask.task.base import DONE_LINK

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline

__all__ = ["graph"]


def _graph_parts(pipeline: Pipeline) -> tuple[list[str], list[tuple[str, str, bool]]]:
    """Return the repository labels and the ``(source, target, inhibits)`` edges."""

    def shown(name: str, link: Link) -> bool:
        return link.is_read or link.is_output or (link.inhibits_start and name != DONE_LINK)

    labels: dict[int, str] = {}
    for task in pipeline.topological_order():
        for name, link in task.links.items():
            if shown(name, link):
                labels.setdefault(id(link.repo), f"{task.name}.{name}")
    edges: list[tuple[str, str, bool]] = []
    for task in pipeline.tasks.values():
        for name, link in task.links.items():
            label = labels.get(id(link.repo))
            if label is None:
                continue
            if link.is_read:
                edges.append((label, task.name, False))
            elif shown(name, link) and not link.is_output:
                edges.append((label, task.name, True))
            if link.is_output or link.is_status:
                edges.append((task.name, label, False))
    return list(labels.values()), list(dict.fromkeys(edges))


def _mermaid_label(text: str) -> str:
    return "".join(f"#{ord(char)};" if char in '"#<>&' else char for char in text)


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def graph(pipeline: Pipeline, format: Literal["mermaid", "dot"] = "mermaid") -> str:
    """Render the pipeline: tasks as boxes, repositories as cylinders, data as arrows.

    An arrow goes from a repository to each task that reads it and from a task to each
    repository it writes; a dashed arrow goes from a repository that holds jobs back
    (``inhibits_start``) to its task. A repository is named by the first ``TASK.LINK``
    that uses it, in dependency order.

    :param format: ``"mermaid"`` (a ``flowchart LR``) or ``"dot"`` (Graphviz).
    """
    tasks = list(pipeline.tasks)
    repos, edges = _graph_parts(pipeline)
    ids = {label: f"task{index}" for index, label in enumerate(tasks)}
    ids.update({label: f"repo{index}" for index, label in enumerate(repos)})
    if format == "mermaid":
        lines = ["flowchart LR"]
        lines += [f'    {ids[label]}["{_mermaid_label(label)}"]' for label in tasks]
        lines += [f'    {ids[label]}[("{_mermaid_label(label)}")]' for label in repos]
        arrows = {False: "-->", True: "-.->"}
        lines += [f"    {ids[src]} {arrows[dashed]} {ids[dst]}" for src, dst, dashed in edges]
        return "\n".join(lines) + "\n"
    if format == "dot":
        lines = ["digraph pipeline {", "    rankdir=LR;"]
        lines += [f"    {ids[label]} [label={_dot_quote(label)}, shape=box];" for label in tasks]
        lines += [
            f"    {ids[label]} [label={_dot_quote(label)}, shape=cylinder];" for label in repos
        ]
        styles = {False: "", True: " [style=dashed]"}
        lines += [f"    {ids[src]} -> {ids[dst]}{styles[dashed]};" for src, dst, dashed in edges]
        return "\n".join([*lines, "}"]) + "\n"
    raise InputError(f"unknown graph format {format!r}: use 'mermaid' or 'dot'")
