"""The shape of the code: no import circles, modules of a readable size, documents that match the tree."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "backends", "strategies")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules `path` imports, at module level or inside functions (a lazy import hides a circle too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def test_no_import_circle_between_our_modules():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ importing its own submodules is how packages export; not a circle.
    graph = {name: {d for d in deps if not name.startswith(d + ".") and not d.startswith(name + ".")}
             for name, deps in graph.items()}
    circles, state = [], {}

    def visit(name, trail):
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                circles.append(trail[trail.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, trail + [dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_no_module_of_the_service_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for path in (ROOT / "orchestrator").rglob("*.py")
            if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_readme_layout_table_names_what_is_in_the_tree():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout"):]
    table = table[:table.index("\n## ", 1)]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = set()
    for row in rows:
        first, what = row.split("|")[1], row.split("|")[2]
        bases = re.findall(r"`([^`]+)`", first)
        for base in bases:
            assert (ROOT / base).exists() or (ROOT / "orchestrator" / base).exists(), base
            named.add((ROOT / base).resolve() if (ROOT / base).exists() else (ROOT / "orchestrator" / base).resolve())
        folder = ROOT / bases[0] if (ROOT / bases[0]).is_dir() else ROOT / bases[0].rpartition("/")[0]
        for name in re.findall(r"`([\w/]+\.py|[\w]+/)`", what):
            path = folder / name
            assert path.exists(), f"{name} in the row of {bases[0]}"
            named.add(path.resolve())
    # Every package of the service has its row (or is named in its parent's).
    for init in (ROOT / "orchestrator").rglob("__init__.py"):
        package = init.parent
        if {"migrations", "management", "commands"} & set(package.parts):
            continue
        assert package.resolve() in named or any(p.is_relative_to(package) for p in named if p != package), package


def test_every_module_architecture_md_names_exists():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"\b((?:orchestrator|learning|mlbackend|gateways|strategies|backends)/[\w/]+\.py)", text))
    assert named, "ARCHITECTURE.md names no module"
    missing = [name for name in named if not (ROOT / name).exists() and not (ROOT / "orchestrator" / name).exists()]
    assert missing == []
