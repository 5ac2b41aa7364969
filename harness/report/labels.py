"""Point labels that do not cover each other.

Models of near-equal size (SmolLM-360M and Qwen2-0.5B are a hair apart on a log axis) and near-equal
speed land on top of each other, and so do their names. Each label tries a few offsets around its
point and takes the first where it overlaps no earlier label, no marker and stays inside the axes;
where none is free it keeps the first offset (a readable clash beats a label lost off the axes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

# Offsets in points, right of the point first (where the log-x axes leave room), then below, left,
# and farther out.
OFFSETS = [(6, 6), (6, -6), (-6, 6), (-6, -6), (6, 18), (6, -18), (-6, 18), (-6, -18)]
MARKER_RADIUS_PT = 5.0


def place_labels(
    ax: Axes, points: list[tuple[float, float]], texts: list[str], fontsize: str = "x-small"
) -> list[Annotation]:
    """Annotate each point (data coordinates) with its text; returns the annotations in order.

    Call it after everything is drawn on ``ax``: it fixes the axes' limits to measure the labels."""
    from matplotlib.transforms import Bbox

    ax.autoscale_view()
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    radius = MARKER_RADIUS_PT * ax.figure.dpi / 72
    taken: list[Bbox] = []
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - radius, py - radius, px + radius, py + radius))
    labels = []
    for (x, y), text in zip(points, texts, strict=True):
        label, box = _first_free(ax, (x, y), text, fontsize, renderer, taken, inside)
        taken.append(box)
        labels.append(label)
    return labels


def _first_free(ax, point, text, fontsize, renderer, taken, inside) -> tuple[Annotation, Bbox]:
    first = None
    for dx, dy in OFFSETS:
        label = ax.annotate(
            text,
            point,
            textcoords="offset points",
            xytext=(dx, dy),
            ha="left" if dx >= 0 else "right",
            va="bottom" if dy >= 0 else "top",
            fontsize=fontsize,
        )
        box = label.get_window_extent(renderer)
        if not any(box.overlaps(other) for other in taken) and _contains(inside, box):
            if first is not None:
                first[0].remove()
            return label, box
        if first is None:
            first = (label, box)
        else:
            label.remove()
    return first


def _contains(outer: Bbox, inner: Bbox) -> bool:
    horizontal = outer.x0 <= inner.x0 and inner.x1 <= outer.x1
    return horizontal and outer.y0 <= inner.y0 and inner.y1 <= outer.y1
