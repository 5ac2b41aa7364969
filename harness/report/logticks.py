"""Ticks for the log-scale parameter axes, with labels that never run into each other.

matplotlib's LogLocator with 1-2-5 steps switches to a linear AutoLocator when fewer than two of
its ticks are in view, as for models within one decade (135M and 360M), and linear steps crowd
the right end of a log axis: the quick grid's trade-off plot printed ``350 M400 M``. The locator
here picks, each time the axis is drawn, the densest set of round values (decades, 1-2-5, ...)
whose labels fit between each other at the axis's size in pixels.

Imported by ``harness.report.plots`` inside its functions only: it imports matplotlib.
"""

from __future__ import annotations

import math

from matplotlib.ticker import Formatter, LogLocator, MaxNLocator

# Round values within a decade, from sparse to dense.
STEPS: tuple[tuple[float, ...], ...] = (
    (1,),
    (1, 2, 5),
    (1, 2, 3, 5),
    (1, 1.5, 2, 3, 4, 5, 7),
    (1, 2, 3, 4, 5, 6, 7, 8, 9),
)
DECADE_STRIDES = (5, 3, 2)  # 1 decade in 5, 3 or 2 apart, for axes spanning many decades
MAX_TICKS = 8  # more labels than this are clutter even where they would fit
CHAR_EM = 0.7  # a label character's width in em, rounded up (DejaVu Sans: digits 0.64, M 0.86)
GAP_EM = 1.0  # the least space left between two neighbouring labels
UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))  # B as tables and model names say, not G


def params_label(value: float, digits: int = 3) -> str:
    """135M, 1B, 2.5B: ``digits`` significant digits and the unit of the tables."""
    for scale, unit in UNITS:
        if abs(value) >= scale * (1 - 0.5 * 10.0**-digits):  # 999.99M rounds to 1B, not 1e+03M
            return f"{value / scale:.{digits}g}{unit}"
    return f"{value:.{digits}g}"


def label_digits(values) -> int:
    """The fewest significant digits (from 3) that tell every value apart: a narrow axis of
    linear steps (350.2M, 350.4M) needs more than round values do."""
    digits = 3
    while digits < 9 and len({params_label(v, digits) for v in values}) < len(values):
        digits += 1
    return digits


class ParamsFormatter(Formatter):
    """Labels in :func:`params_label`, with as many digits as the ticks in view need."""

    digits = 3

    def set_locs(self, locs) -> None:
        super().set_locs(locs)
        self.digits = label_digits(list(locs))

    def __call__(self, x, pos=None) -> str:
        return params_label(x, self.digits)


class ParamsLocator(LogLocator):
    """Round log ticks whose labels fit; see the module docstring."""

    def __init__(self) -> None:
        super().__init__(base=10.0, subs=(1.0,))

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        vmin, vmax = sorted((vmin, vmax))
        if vmax <= 0:
            return []
        vmin = vmin if vmin > 0 else vmax / 1e3  # a log axis shows no value <= 0
        lo, hi = math.log10(vmin), math.log10(vmax)
        px_per_decade, em_px = self._pixels(hi - lo)

        def fits(ticks: list[float]) -> bool:
            digits = label_digits(ticks)
            widths = [len(params_label(t, digits)) * CHAR_EM * em_px for t in ticks]
            return all(
                (math.log10(b) - math.log10(a)) * px_per_decade >= (wa + wb) / 2 + GAP_EM * em_px
                for a, b, wa, wb in zip(ticks, ticks[1:], widths, widths[1:], strict=False)
            )

        def shown(ticks) -> list[float]:
            tol = 1e-9 * (vmax - vmin)
            return sorted(float(t) for t in ticks if vmin - tol <= t <= vmax + tol)

        decades = range(math.floor(lo), math.ceil(hi) + 1)
        sets = [shown(10.0**d for d in decades if d % k == 0) for k in DECADE_STRIDES]
        sets += [shown(s * 10.0**d for d in decades for s in subs) for subs in STEPS]
        chosen = _densest(sets, fits)
        if chosen is None:
            # Within one step of round values (350M and 360M): linear steps, which a log axis this
            # narrow draws evenly spaced.
            steps = [1, 2, 2.5, 5, 10]
            linear = [
                shown(MaxNLocator(n, steps=steps).tick_values(vmin, vmax))
                for n in range(2, MAX_TICKS + 1)
            ]
            chosen = _densest(linear, fits)
            sets += linear
        if chosen is None:  # an axis too short for two labels: one label cannot collide
            chosen = min((s for s in sets if s), key=len, default=[])[:1]
        return chosen

    def _pixels(self, decades: float) -> tuple[float, float]:
        """(pixels per decade, pixels per em of a tick label) at the axis's current size."""
        axis = self.axis
        if axis is None or axis.axes is None:  # not attached: a typical 5-inch axis at 100 dpi
            return 500.0 / max(decades, 1e-9), 10.0 * 100 / 72
        box = axis.axes.bbox
        length = box.width if axis.axis_name == "x" else box.height
        # the tick label font, as tick_params set it
        size_pt = axis.majorTicks[0].label1.get_fontsize()
        return length / max(decades, 1e-9), size_pt * axis.axes.figure.dpi / 72


def _densest(sets: list[list[float]], fits) -> list[float] | None:
    """The set with the most ticks (at least two, at most MAX_TICKS) whose labels fit; of equal
    counts the first, which lists rounder values."""
    fitting = [s for s in sets if 2 <= len(s) <= MAX_TICKS and fits(s)]
    return max(fitting, key=len) if fitting else None
