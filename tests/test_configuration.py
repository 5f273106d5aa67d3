"""Configuration comes from the environment through one module, and the README lists all of it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READERS = {"env_str", "env_bool", "env_int"}


def _environment_reads(tree: ast.AST) -> list[str]:
    """Names of the environment variables a module reads (os.environ.get/[...], os.getenv, env_*)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            if isinstance(func, ast.Name) and func.id in READERS:
                names.append(node.args[0].value)
            elif isinstance(func, ast.Attribute) and func.attr in {"get", "getenv"} and (
                    ast.unparse(func.value) in {"os.environ", "os"}):
                names.append(node.args[0].value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" and isinstance(
                node.ctx, ast.Load):
            names.append(ast.unparse(node.slice))
    return names


def test_only_settings_reads_the_environment():
    readers = {}
    for path in (ROOT / "orchestrator").rglob("*.py"):
        if path.name == "settings.py" or "migrations" in path.parts:
            continue
        found = _environment_reads(ast.parse(path.read_text()))
        if found:
            readers[str(path.relative_to(ROOT))] = found
    assert readers == {}  # os.environ.setdefault (a default for what runs next) is not a read


def test_every_variable_settings_reads_is_in_the_readme_and_nothing_else_is():
    read = set(_environment_reads(ast.parse((ROOT / "orchestrator" / "settings.py").read_text())))
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    table = table[:table.index("\n## ", 1)]
    listed = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            listed |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    assert read - listed == set(), "read in settings.py but not in the README's table"
    assert listed - read == set(), "in the README's table but never read"


def test_without_a_secret_key_each_data_folder_gets_its_own_random_one(tmp_path):
    import os
    import stat

    from orchestrator.settings import _data_dir_secret_key

    first = _data_dir_secret_key(tmp_path)
    assert len(first) >= 50 and first == _data_dir_secret_key(tmp_path)  # made once, then read
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    other = tmp_path / "other"
    other.mkdir()
    assert _data_dir_secret_key(other) != first
    assert "insecure" not in first


def test_mlflow_telemetry_is_off_unless_the_operator_opts_in():
    import os

    from django.conf import settings  # noqa: F401 - loading the settings is what turns it off

    assert os.environ.get("MLFLOW_DISABLE_TELEMETRY") == "true"
