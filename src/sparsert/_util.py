"""Small helpers shared by the command line, the demo and the runtime's tables: byte sizes,
aligned text tables, shapes, escaping of untrusted text, and wall-clock timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def shape_text(shape: Sequence[int], names: Sequence[str] = ()) -> str:
    """``1x3x224x224``; dynamic dims as their name or ``?``."""
    names = tuple(names) or ("",) * len(shape)
    return "x".join((n or "?") if d < 0 else str(d) for d, n in zip(shape, names))


def printable(text: Any) -> str:
    """``text`` with control characters (and DEL, and C1 controls) escaped as ``\\xNN``: names and
    metadata come from untrusted files and must not be able to rewrite a terminal."""
    out = []
    for ch in str(text):
        code = ord(ch)
        out.append(f"\\x{code:02x}" if code < 0x20 or 0x7F <= code < 0xA0 else ch)
    return "".join(out)


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """An aligned text table; columns in ``right`` are right-aligned. Cells are escaped."""
    cells = [[printable(c) for c in row] for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *cells)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(list(head)), line(["-" * w for w in widths])] + [line(r) for r in cells])


def time_calls(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def timing_stats(times: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the spread (interquartile range / median) of a list of times. A spread
    above :data:`NOISY_SPREAD` means the machine was busy while measuring."""
    ordered = sorted(times)
    med = statistics.median(ordered)
    q1 = ordered[len(ordered) // 4]
    q3 = ordered[(3 * len(ordered)) // 4] if len(ordered) > 1 else ordered[0]
    return {"median_ms": med, "min_ms": ordered[0], "max_ms": ordered[-1],
            "spread": (q3 - q1) / med if med > 0 else 0.0}


NOISY_SPREAD = 0.25
