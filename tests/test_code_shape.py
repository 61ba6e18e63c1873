"""The house rules a reader relies on, checked on the source: short functions, typed public functions.

zoo/commands/ holds click callbacks, whose parameters are typed by their options: they are left out of
the type-hint rule (not of the length rule).
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "export", "infer", "serve")
MAX_LINES = 80


def sources():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def public_functions(tree):
    """Module-level public functions and the public methods of public classes."""
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) and not node.name.startswith("_") else [node]
        for m in members:
            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_"):
                yield m


def test_no_function_is_over_80_lines():
    long = [
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
        for path in sources()
        for fn in functions(ast.parse(path.read_text()))
        if fn.end_lineno - fn.lineno + 1 > MAX_LINES
    ]
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def test_every_public_function_has_type_hints():
    untyped = []
    for path in sources():
        if path.parent.name == "commands":
            continue
        for fn in public_functions(ast.parse(path.read_text())):
            args = [
                a for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs) if a.arg not in ("self", "cls")
            ]
            if fn.returns is None or any(a.annotation is None for a in args):
                untyped.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}")
    assert not untyped, "public functions without type hints:\n" + "\n".join(untyped)
