"""The shape of the code base: no import cycle, no file over 400 lines, no function over 60
(docstring counted), one sampler signature, the catalogue above the algorithms."""

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
    """Lines of a function's body, its docstring counted, its signature not."""
    return node.end_lineno - node.body[0].lineno + 1


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


def test_every_method_has_the_one_sampler_signature():
    """``fn(denoiser, physics, y, grid, options, *, generator, callback)``, nothing else."""
    import inspect

    from dmap import METHODS

    for name, m in METHODS.items():
        params = inspect.signature(m.fn).parameters
        positional = [p for p, v in params.items() if v.kind == v.POSITIONAL_OR_KEYWORD]
        keyword = [p for p, v in params.items() if v.kind == v.KEYWORD_ONLY]
        assert positional == ["denoiser", "physics", "y", "grid", "options"], (name, positional)
        assert keyword == ["generator", "callback"], (name, keyword)


def test_the_catalogue_sits_above_the_algorithms():
    """Importing the algorithms loads no catalogue (nothing registers itself on import), and
    no module under them imports it; the CLI sees the benchmark only through its face."""
    import subprocess
    import sys

    code = (
        "import sys, dmap.solvers, dmap.cse, dmap.priors, dmap.operators; print(sorted(m for m in sys.modules if 'catalogue' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    known = set(modules())
    for name, path in modules().items():
        found = imports(path, known)
        if name.split(".")[1:2] in (["solvers"], ["cse"], ["priors"], ["operators"], ["schedule"]):
            assert "dmap.catalogue" not in found, name
        if name.startswith("dmap.cli"):
            assert not {m for m in found if m.startswith("dmap.bench.")}, (name, found)
    from dmap.operators import TASKS

    before = set(TASKS)
    import dmap.catalogue  # noqa: F401

    assert set(TASKS) == before


def test_the_architecture_examples_run_as_written():
    """docs/architecture.md: the method added in 20-odd lines restores from a measurement, and
    a user's EDM network, wrapped, runs DPS on the karras grid."""
    import re

    import torch

    from dmap import METHODS, make_task, solve
    from dmap.rng import sample_generators, seeded

    text = (SRC.parent.parent / "docs" / "architecture.md").read_text()
    method, edm = re.findall(r"\(tested as written\)\n\n```python\n(.*?)```", text, re.S)
    assert len(method.strip().splitlines()) <= 30 and len(edm.strip().splitlines()) <= 22
    try:
        exec(compile(method, "docs/architecture.md", "exec"), {})
        prior = __import__("dmap").load_prior("gmm-mnist")
        task = make_task("sr4", prior.image_shape, generator=seeded(0))
        x = prior.mixture.sample(2, torch.Generator().manual_seed(0)).float().reshape(2, *prior.shape)
        y = task.simulate(x, generator=sample_generators(1, 2))
        out = solve("dps-squared", prior, task, y, steps=20, step_size=0.01, generator=sample_generators(2, 2))
        assert out.shape == x.shape and float((out - x).pow(2).mean()) < float(x.pow(2).mean())
    finally:
        METHODS.pop("dps-squared", None)
    scope: dict = {}
    exec(compile(edm, "docs/architecture.md", "exec"), scope)
    assert scope["x0"].shape == (2, 1, 32, 32) and torch.isfinite(scope["x0"]).all()
