"""The source article's defects, measured: the ablation the book shows (``make ablation``).

Trains the book's pipeline in the ``sample`` profile and, for each of the
source article's defects, the same pipeline with that defect alone
(:data:`skullstrip_lib.lessons.ablation.DEFECTS`): same heads, same seeds,
same budget, every run scored on held-out heads in native space. Then writes

* ``skullstrip_lib/lessons/results/ablation.csv``: every scored head of every
  run, and ``ablation.json`` beside it: the command, machine, date, time and
  versions (chapter 8 reads both with ``lessons.ablation.recorded``);
* ``book/ablation_table.md``: the table ``book/source_article.md`` includes;

and prints the table. Runs already finished in the work folder (keyed by the
profile and the library version) are reused, so an interrupted ablation goes on
where it stopped. About a minute a run on 2 CPU cores: 7 runs a seed.

    python benchmarks/ablation.py [--seeds 5] [--defects none block ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402


def machine() -> str:
    """CPU, cores and memory, as the table's provenance line gives them."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu_model()}, {os.cpu_count()} cores, {memory:.0f} GB, no GPU used"


def main(argv: list[str] | None = None) -> int:
    from skullstrip_lib.lessons import ablation

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--defects", nargs="+", choices=list(ablation.DEFECTS),
                        help="only these (default all; 'none' always runs)")
    parser.add_argument("--extra-heads", type=int, default=4,
                        help="held-out heads added per synthetic group (default 4)")
    parser.add_argument("--work-dir", help="prepared data and finished runs (default: cache)")
    parser.add_argument("--csv", type=Path, default=ablation.RECORDED,
                        help="where the scores go (ablation.json beside it)")
    parser.add_argument("--markdown", type=Path, default=ROOT / "book" / "ablation_table.md",
                        help="where the book's table goes")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    import skullstrip_lib
    from skullstrip_lib.io import atomic_write_text

    start = time.perf_counter()
    scores = ablation.run_ablation(args.defects, range(args.seeds), work_dir=args.work_dir,
                                   extra_per_group=args.extra_heads)
    minutes = (time.perf_counter() - start) / 60
    provenance = {
        "command": " ".join(["python benchmarks/ablation.py", *(argv or sys.argv[1:])]).strip(),
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "minutes": round(minutes, 1),
        "profile": "sample",
        "seeds": args.seeds,
        "versions": {"skullstrip_lib": skullstrip_lib.__version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__, "python": platform.python_version()},
    }
    summary = ablation.summarize(scores)
    table = ablation.markdown_table(summary, provenance)
    atomic_write_text(args.csv, scores.to_csv(index=False, float_format="%.5g"))
    atomic_write_text(args.csv.with_suffix(".json"), json.dumps(provenance, indent=1) + "\n")
    atomic_write_text(args.markdown, table)
    print(table)
    print(f"written: {args.csv}, {args.csv.with_suffix('.json')}, {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
