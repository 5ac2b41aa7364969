import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from harness.report.labels import OFFSETS, place_labels  # noqa: E402


def boxes(fig, labels):
    renderer = fig.canvas.get_renderer()
    return [label.get_window_extent(renderer) for label in labels]


def test_labels_of_neighbouring_points_do_not_overlap():
    # Two models of near-equal size and speed, as SmolLM-360M and Qwen2-0.5B at OTPS ~70.
    fig, ax = plt.subplots(figsize=(6, 4))
    points = [(1.35e8, 164.0), (3.6e8, 71.0), (4.9e8, 70.0)]
    ax.set_xscale("log")
    ax.plot(*zip(*points, strict=True), "o")
    labels = place_labels(
        ax, points, ["smollm2-135m-instruct", "smollm-360m-instruct", "qwen2-0.5b-instruct"]
    )
    a, b, c = boxes(fig, labels)
    assert not b.overlaps(c) and not a.overlaps(b) and not a.overlaps(c)
    plt.close(fig)


def test_a_lone_point_keeps_the_usual_place():
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([1.0, 10.0], [1.0, 10.0], "o")
    (label,) = place_labels(ax, [(1.0, 1.0)], ["m"])
    assert label.xyann == OFFSETS[0]
    plt.close(fig)
