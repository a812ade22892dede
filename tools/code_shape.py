"""The library's shape in numbers: modules and their lines, the longest functions.

Run from the repository root: ``python tools/code_shape.py [--top N]``. Issue 19 asks for
these numbers before and after a restructuring; repeated code is counted by the
``duplicates`` tool (``duplicates --repo skullstrip_lib``), imports by ``tests/test_layers.py``.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def functions(path: Path) -> list[tuple[int, str]]:
    """(lines, qualified name) of every function and method of one module."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((child.end_lineno - child.lineno + 1, f"{prefix}{child.name}"))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(path.read_text()), "")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10, help="how many modules and functions")
    parser.add_argument("--package", default="skullstrip_lib")
    args = parser.parse_args()
    package = ROOT / args.package
    modules = sorted(package.rglob("*.py"))
    sizes = sorted(((len(p.read_text().splitlines()), p.relative_to(ROOT)) for p in modules),
                   reverse=True)
    longest = sorted(((n, f"{p.relative_to(ROOT)}:{name}") for p in modules
                      for n, name in functions(p)), reverse=True)
    print(f"{len(modules)} modules, {sum(n for n, _ in sizes):,} lines in {args.package}/")
    print(f"\nlargest {args.top} modules (lines):")
    for n, p in sizes[:args.top]:
        print(f"  {n:6,}  {p}")
    print(f"\nlongest {args.top} functions (lines, nested ones counted on their own too):")
    for n, name in longest[:args.top]:
        print(f"  {n:6,}  {name}")


if __name__ == "__main__":
    main()
