"""The layers stay one-way: import-linter checks the contract in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contract_is_kept() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and "0 broken" in result.stdout


# The issue-14 limits that keep the code readable: a module in bot/ or webchat/ fits in about 400
# lines, a class in 300, a function anywhere in the shipped packages in 60. Generated config text
# (the templates in hotline/production.py and hotline/proxy.py) is exempt: it reads top to bottom.
MODULE_LINES = 400
CLASS_LINES = 300
FUNCTION_LINES = 60
EXEMPT_FUNCTIONS = {
    ("hotline/production.py", "systemd_units"),
    ("hotline/production.py", "systemd_next_steps"), ("hotline/proxy.py", "caddyfile"),
    ("hotline/proxy.py", "nginx_site"),
}


def oversized() -> list[str]:
    found = []
    for package in ("hotline_runtime", "bot", "webchat", "hotline"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            source = path.read_text(encoding="utf-8")
            lines = len(source.splitlines())
            if package in ("bot", "webchat") and lines > MODULE_LINES:
                found.append(f"{name}: {lines} lines")
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                size = node.end_lineno - node.lineno + 1
                if isinstance(node, ast.ClassDef):
                    limit = CLASS_LINES
                else:
                    limit = FUNCTION_LINES if (name, node.name) not in EXEMPT_FUNCTIONS else 10**6
                if size > limit:
                    found.append(f"{name}:{node.lineno} {node.name}: {size} lines")
    return found


def test_modules_classes_and_functions_stay_small() -> None:
    assert oversized() == []


# ------------------------------------------------------------------ the newcomer test

def newcomer_rows() -> list[tuple[str, str, str]]:
    """(rule, file, name) from docs/architecture.md's table "Where a rule lives"."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("### Where a rule lives", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`"):
            rows.append((cells[0], cells[1].strip("`"), re.findall(r"`([^`]+)`", cells[2])[0]))
    return rows


def defines(path: Path, name: str) -> bool:
    """Whether the file defines ``name`` (``Class.method`` for a method): a def, class or assignment
    in Python, a function in JavaScript."""
    source = path.read_text(encoding="utf-8")
    if path.suffix == ".js":
        return re.search(rf"\bfunction {re.escape(name)}\(", source) is not None
    scope: list[ast.stmt] = ast.parse(source).body
    for part in name.split("."):
        found = next((node for node in scope if _names(node) and part in _names(node)), None)
        if found is None:
            return False
        scope = getattr(found, "body", [])
    return True


def _names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {target.id for target in targets if isinstance(target, ast.Name)}
    return set()


def test_the_newcomer_table_names_real_places() -> None:
    rows = newcomer_rows()
    assert len(rows) == 5, rows
    for rule, file, name in rows:
        assert (ROOT / file).is_file(), f"{rule}: no file {file}"
        assert defines(ROOT / file, name), f"{rule}: {file} does not define {name}"
