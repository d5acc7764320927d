"""The activity chart as inline SVG, drawn on the server: no script, no library, prints and saves as is.

Two panels over the same time axis: invoices reversed per second (bars), and the mean number of
calls open to the platform (a line) against the tenant's cap (a dashed line), so an operator sees
whether the run used the room the platform gives it. A call's recorded latency includes any wait
for a tenant slot, so a line at or above the cap means every slot was taken.
"""

from __future__ import annotations

import math
from datetime import timedelta

from markupsafe import Markup, escape

from orchestrator.services.views import Activity

__all__ = ["activity_svg"]

_ANCHORS: dict[float, str] = {0.0: "start", 1.0: "end"}

_WIDTH, _PANEL, _GAP, _LEFT, _RIGHT, _TOP, _BOTTOM = 760, 110, 34, 52, 16, 20, 44


def activity_svg(activity: Activity, *, cap: int | None) -> Markup:
    buckets = activity.buckets
    if not buckets or not any(b.settled or b.calls for b in buckets):
        return Markup('<p class="muted" id="activity-empty">No invoice settled and no call made yet.</p>')
    width = activity.bucket_seconds
    plot = _WIDTH - _LEFT - _RIGHT
    step = plot / len(buckets)
    rates = [b.reversed / width for b in buckets]
    inflight = [b.busy_ms / 1000 / width for b in buckets]
    rate_top = _nice_ceiling(max(rates))
    inflight_top = _nice_ceiling(max([*inflight, float(cap or 0)]))
    top2 = _TOP + _PANEL + _GAP
    height = top2 + _PANEL + _BOTTOM
    parts = [
        f'<svg class="chart" id="activity-chart" viewBox="0 0 {_WIDTH} {height}" '
        f'role="img" aria-label="Invoices reversed per second and calls in flight against the tenant cap">',
        _axis(_TOP, rate_top, "reversed / s"),
        _axis(top2, inflight_top, "calls open (in flight, or waiting for a tenant slot)"),
    ]
    for index, (bucket, rate) in enumerate(zip(buckets, rates, strict=True)):
        if not bucket.reversed:
            continue
        bar = _PANEL * rate / rate_top
        x = _LEFT + index * step
        label = f"+{_clock(bucket.offset_seconds)}: {bucket.reversed} reversed ({rate:.1f}/s)"
        parts.append(
            f'<rect class="reversals" x="{x + step * 0.1:.1f}" y="{_TOP + _PANEL - bar:.1f}" '
            f'width="{max(step * 0.8, 1):.1f}" height="{bar:.1f}"><title>{escape(label)}</title></rect>'
        )
    points = " ".join(
        f"{_LEFT + (i + 0.5) * step:.1f},{top2 + _PANEL - _PANEL * value / inflight_top:.1f}"
        for i, value in enumerate(inflight)
    )
    parts.append(
        f'<polyline class="inflight" points="{points}">'
        "<title>calls open on average: above the cap, the excess waited for a slot</title></polyline>"
    )
    if cap:
        y = top2 + _PANEL - _PANEL * cap / inflight_top
        parts.append(
            f'<line class="cap" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="cap-label" x="{_WIDTH - _RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end">'
            f"tenant cap {cap}</text>"
        )
    span = width * len(buckets)
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        x = _LEFT + plot * fraction
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{height - 26}" text-anchor="{_ANCHORS.get(fraction, "middle")}">'
            f"+{_clock(span * fraction)}</text>"
        )
    start = activity.start.strftime("%Y-%m-%d %H:%M:%S UTC")
    parts.append(f'<text class="tick" x="{_LEFT}" y="{height - 6}">from {start}, {_clock(width)} per bar</text></svg>')
    return Markup("".join(parts))  # noqa: S704  # numbers we formatted, and labels passed through escape()


def _axis(top: float, ceiling: float, label: str) -> str:
    bottom = top + _PANEL
    return (
        f'<line class="axis" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{bottom}" y2="{bottom}"/>'
        f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{top}" y2="{top}"/>'
        f'<text class="tick" x="{_LEFT - 6}" y="{top + 4}" text-anchor="end">{_number(ceiling)}</text>'
        f'<text class="tick" x="{_LEFT - 6}" y="{bottom}" text-anchor="end">0</text>'
        f'<text class="panel-label" x="{_LEFT + 4}" y="{top - 6}">{label}</text>'
    )


def _nice_ceiling(value: float) -> float:
    """1, 2, 5 times a power of ten, at least the value (and never zero)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= value)


def _number(value: float) -> str:
    return f"{value:g}"


def _clock(seconds: float) -> str:
    text = str(timedelta(seconds=round(seconds)))
    return text.removeprefix("0:") if seconds < 3600 else text
