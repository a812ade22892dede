"""The benchmarks' tables, printed one way (shared by the bench_* scripts)."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> None:
    """Print rows of strings under a header: Markdown (for the README) or aligned columns.

    Examples
    --------
    >>> print_table(["step", "s"], [["N4", "1.50"], ["resample", "0.20"]], markdown=True)
    | step | s |
    |---|---|
    | N4 | 1.50 |
    | resample | 0.20 |
    >>> print_table(["step", "s"], [["N4", "1.50"]], markdown=False)
    step  s
    N4    1.50
    """
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        for row in [header, *rows]:
            print("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
