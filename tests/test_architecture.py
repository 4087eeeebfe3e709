"""The shape of the code base: no import cycle, no file over 400 lines, no function over 60."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "dmap"


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """The dmap modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def test_the_import_graph_has_no_cycle():
    mods = modules()
    graph = {m: imports(p, set(mods)) - {m} for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n) :] + [m, n]))
            if n not in state:
                visit(n, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def body_lines(node: ast.FunctionDef) -> int:
    """Lines of a function's body, its signature and docstring not counted."""
    body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) else node.body
    return node.end_lineno - body[0].lineno + 1 if body else 0


def test_no_file_over_400_lines_and_no_function_over_60():
    long_files = [f"{p.name}: {n}" for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400]
    assert not long_files
    long_functions = []
    for p in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = body_lines(node)
                if n > 60:
                    long_functions.append(f"{p.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long_functions, long_functions


def test_the_core_does_no_data_or_cache_io():
    """Schedules, priors, operators and solvers neither read the bundled data nor touch a cache."""
    core = [
        p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] in ("priors", "operators", "solvers") or p.name == "schedule.py"
    ]
    for p in core:
        text = p.read_text()
        for word in ("dmap.data", "cache_dir", "os.replace", "resources.files"):
            assert word not in text, f"{p.relative_to(SRC)} uses {word}"
