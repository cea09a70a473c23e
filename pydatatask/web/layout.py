"""Where the task graph's boxes and arrows go: tasks in columns by their depth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydatatask.pipeline import Pipeline

__all__ = ["Arrow", "Box", "Drawing", "layout"]

BOX_WIDTH = 240
BOX_HEIGHT = 88
COLUMN_GAP = 90
ROW_GAP = 28
MARGIN = 16


@dataclass(frozen=True)
class Box:
    """One task's box, by its top left corner."""

    task: str
    x: int
    y: int


@dataclass(frozen=True)
class Arrow:
    """An arrow from the task that writes a repository to a task that reads it."""

    upstream: str
    downstream: str
    path: str
    """SVG path data."""


@dataclass(frozen=True)
class Drawing:
    """The whole graph: its size, boxes and arrows."""

    width: int
    height: int
    box_width: int
    box_height: int
    boxes: list[Box]
    arrows: list[Arrow]


def layout(pipeline: Pipeline) -> Drawing:
    """Place each task in the column of its longest chain of upstream tasks."""
    depth: dict[str, int] = {}
    for task in pipeline.topological_order():
        ups = [depth[up.name] for up in pipeline.upstream_of(task.name)]
        depth[task.name] = 1 + max(ups) if ups else 0
    columns: dict[int, list[str]] = {}
    for name in pipeline.tasks:  # the pipeline's own order within a column
        columns.setdefault(depth[name], []).append(name)
    boxes: dict[str, Box] = {}
    for column, names in columns.items():
        for row, name in enumerate(names):
            x = MARGIN + column * (BOX_WIDTH + COLUMN_GAP)
            boxes[name] = Box(name, x, MARGIN + row * (BOX_HEIGHT + ROW_GAP))
    arrows = []
    for edge in pipeline.edges:
        start, end = boxes[edge.upstream], boxes[edge.downstream]
        x1, y1 = start.x + BOX_WIDTH, start.y + BOX_HEIGHT // 2
        x2, y2 = end.x, end.y + BOX_HEIGHT // 2
        bend = max(COLUMN_GAP // 2, (x2 - x1) // 2)
        path = f"M {x1} {y1} C {x1 + bend} {y1}, {x2 - bend} {y2}, {x2 - 6} {y2}"
        arrows.append(Arrow(edge.upstream, edge.downstream, path))
    rows = max((len(names) for names in columns.values()), default=0)
    return Drawing(
        width=2 * MARGIN + len(columns) * BOX_WIDTH + max(0, len(columns) - 1) * COLUMN_GAP,
        height=2 * MARGIN + rows * BOX_HEIGHT + max(0, rows - 1) * ROW_GAP,
        box_width=BOX_WIDTH,
        box_height=BOX_HEIGHT,
        boxes=list(boxes.values()),
        arrows=arrows,
    )
