"""List the functions longer than a limit; exit 1 if there is one (the lint lane's length check).

Length: the lines from ``def`` to the function's last line, its docstring left out (a numpydoc
docstring with Parameters and Returns is welcome at any length).

    python tools/long_functions.py src --max-lines 60
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def function_lengths(path: Path):
    """Yield (name, first line, length without the docstring) of every function in a file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                length -= first.end_lineno - first.lineno + 1
            yield node.name, node.lineno, length


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-lines", type=int, default=60)
    args = parser.parse_args(argv)
    long = [
        (length, f"{path}:{line} {name}")
        for path in sorted(args.folder.rglob("*.py"))
        for name, line, length in function_lengths(path)
        if length > args.max_lines
    ]
    for length, where in sorted(long, reverse=True):
        print(f"{length:5d} lines  {where}")
    print(f"{len(long)} functions over {args.max_lines} lines (docstrings not counted) in {args.folder}")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
