"""``docs/configuration.md`` lists every setting and environment variable the code reads,
with the default the code has, and nothing the code no longer reads.

Everything is read from the sources with :mod:`ast` (no database, no client):

* the ``EMAILSETTINGS_*`` names written in the Python sources of the product packages
  (every directory scanned recursively, so a module moving between packages changes
  nothing; migrations and tests left out);
* the environment variables ``psicogest/settings.py`` reads (``env.str(…)`` and the other
  ``environ.Env`` readers, ``os.environ.get(…)``, ``os.environ[…]``, ``os.getenv(…)``), a name
  given through a loop over a literal tuple resolved to each of its values;
* the names the doc documents: the backticked names in the first cell of its table rows.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "manage.py").is_file())
DOC = ROOT / "docs" / "configuration.md"
SETTINGS_MODULE = ROOT / "psicogest" / "settings.py"
CONF_MODULE = ROOT / "emailsettings" / "conf.py"
# devtools/ holds what psicogest/dev*.py held; scanned when it exists.
PACKAGES = ("emailsettings", "psicogest", "devtools")
SKIPPED_DIRS = {"migrations", "tests", "__pycache__"}

SETTING = re.compile(r"EMAILSETTINGS_[A-Z0-9_]+")
SETTING_PREFIX = re.compile(r"EMAILSETTINGS_[A-Z0-9_]*")
DOCUMENTED_NAME = re.compile(r"`([A-Z][A-Z0-9_]*)`")
CODE_SPAN = re.compile(r"`([^`]+)`")
# environ.Env methods that take something other than a variable's name.
ENV_NOT_READERS = {"read_env", "parse_value", "escape_proxy", "get_value"}


# --- the sources -------------------------------------------------------------------------


def _python_sources() -> Iterator[Path]:
    for package in PACKAGES:
        top = ROOT / package
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*.py")):
            if not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts):
                yield path


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _names_in(node: ast.AST) -> Iterator[str]:
    """The ``EMAILSETTINGS_*`` names a node writes out in full: a string (``getattr``, an
    environment lookup, a tuple of names), an attribute (``settings.X``) or a variable."""
    text = _string(node)
    if isinstance(node, ast.Attribute):
        text = node.attr
    elif isinstance(node, ast.Name):
        text = node.id
    if text is not None and SETTING.fullmatch(text):
        yield text


def settings_read_by_code() -> dict[str, list[str]]:
    """Each ``EMAILSETTINGS_*`` name the product's sources write out, with where."""
    found: dict[str, list[str]] = {}
    for path in _python_sources():
        for node in ast.walk(_tree(path)):
            for name in _names_in(node):
                found.setdefault(name, []).append(_where(path, node))
    return found


# --- the environment variables psicogest/settings.py reads -------------------------------


def _literal_strings(node: ast.AST, bindings: dict[str, set[str]]) -> set[str] | None:
    """The strings an expression can be: a literal, a tuple/list/set of literals, or a
    variable bound to one of those; ``None`` when that cannot be told from the source."""
    text = _string(node)
    if text is not None:
        return {text}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        values: set[str] = set()
        for item in node.elts:
            found = _literal_strings(item, bindings)
            if found is None:
                return None
            values |= found
        return values
    if isinstance(node, ast.Name) and node.id in bindings:
        return bindings[node.id]
    return None


def _bindings(tree: ast.Module) -> dict[str, set[str]]:
    """The strings each variable may hold: a variable assigned a literal string or a literal
    tuple of strings, and the target of a ``for`` loop or comprehension over one
    (``for _name in ("A", "B")``, ``[n for n in REQUIRED_IN_PRODUCTION …]``)."""
    pairs: list[tuple[ast.AST, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            pairs.extend((target, node.value) for target in node.targets)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs.append((node.target, node.value))
        elif isinstance(node, ast.For | ast.comprehension):
            pairs.append((node.target, node.iter))
    bindings: dict[str, set[str]] = {}
    # A loop may run over a name bound further down the walk: repeat until nothing changes.
    changed = True
    while changed:
        changed = False
        for target, value in pairs:
            found = _literal_strings(value, bindings)
            if isinstance(target, ast.Name) and found:
                known = bindings.setdefault(target.id, set())
                if not found <= known:
                    known |= found
                    changed = True
    return bindings


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _env_instances(tree: ast.Module) -> set[str]:
    """The variables holding an ``environ.Env()``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == "Env":
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _variable_argument(node: ast.AST, env_names: set[str]) -> ast.AST | None:
    """The expression naming the environment variable, when ``node`` reads one."""
    if isinstance(node, ast.Subscript) and _is_os_environ(node.value):
        return node.slice
    if isinstance(node, ast.Compare) and any(_is_os_environ(c) for c in node.comparators):
        return node.left  # "NAME" in os.environ
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    reads = (
        # env("NAME"), env.str("NAME"), env.bool(…), env.db(…), …
        (isinstance(func, ast.Name) and func.id in env_names)
        or (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in env_names
            and func.attr not in ENV_NOT_READERS
        )
        # os.environ.get("NAME"), os.environ.setdefault(…), os.environ.pop(…)
        or (isinstance(func, ast.Attribute) and _is_os_environ(func.value))
        # os.getenv("NAME")
        or (
            isinstance(func, ast.Attribute)
            and func.attr == "getenv"
            and isinstance(func.value, ast.Name)
            and func.value.id == "os"
        )
    )
    if not reads:
        return None
    if node.args:
        return node.args[0]
    return next((k.value for k in node.keywords if k.arg in {"var", "key"}), None)


@dataclass
class EnvironmentReads:
    names: dict[str, list[str]]
    unresolved: list[str]


def environment_read_by_settings() -> EnvironmentReads:
    tree = _tree(SETTINGS_MODULE)
    bindings = _bindings(tree)
    env_names = _env_instances(tree) or {"env"}
    reads = EnvironmentReads(names={}, unresolved=[])
    for node in ast.walk(tree):
        argument = _variable_argument(node, env_names)
        if argument is None:
            continue
        values = _literal_strings(argument, bindings)
        if not values:
            reads.unresolved.append(f"{_where(SETTINGS_MODULE, node)}: {ast.unparse(node)}")
            continue
        for value in values:
            reads.names.setdefault(value, []).append(_where(SETTINGS_MODULE, node))
    return reads


# --- the doc -----------------------------------------------------------------------------


@dataclass
class DocRow:
    line: int
    cells: dict[str, str]


def doc_rows() -> dict[str, DocRow]:
    """Each name documented in a table row's first cell, with the row's cells by header."""
    rows: dict[str, DocRow] = {}
    header: list[str] | None = None
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = [cell.lower() for cell in cells]
            continue
        if all(set(cell) <= set("-: ") for cell in cells):
            continue  # the separator under the header
        for name in DOCUMENTED_NAME.findall(cells[0]):
            # The first row naming it is its own (later tables may mention it again).
            rows.setdefault(name, DocRow(line=number, cells=dict(zip(header, cells, strict=False))))
    return rows


def _listing(names: dict[str, list[str]] | set[str] | list[str]) -> str:
    if isinstance(names, dict):
        return "\n".join(
            f"  {name}  ({', '.join(sorted(set(where))[:3])})" for name, where in names.items()
        )
    return "\n".join(f"  {name}" for name in sorted(names))


# --- the tests ---------------------------------------------------------------------------


def test_the_scans_find_what_they_look_for():
    """A scan that silently finds nothing would make every other test pass."""
    assert len(settings_read_by_code()) >= 30
    assert {"DATABASE_URL", "REDIS_URL", "DJANGO_ENV"} <= set(environment_read_by_settings().names)
    assert len(doc_rows()) >= 30


def test_every_setting_the_code_reads_is_documented():
    documented = set(doc_rows())
    missing = {
        name: where
        for name, where in sorted(settings_read_by_code().items())
        if name not in documented
    }
    assert not missing, (
        f"Settings read by the code but not documented in {DOC.relative_to(ROOT)} "
        f"(add a table row for each):\n{_listing(missing)}"
    )


def test_every_environment_variable_settings_reads_is_documented():
    reads = environment_read_by_settings()
    assert not reads.unresolved, (
        "psicogest/settings.py reads environment variables whose names cannot be told from "
        "the source (write the name, or loop over a literal tuple of names):\n"
        + _listing(reads.unresolved)
    )
    documented = set(doc_rows())
    missing = {name: where for name, where in sorted(reads.names.items()) if name not in documented}
    assert not missing, (
        f"Environment variables read by psicogest/settings.py but not documented in "
        f"{DOC.relative_to(ROOT)}:\n{_listing(missing)}"
    )


def test_every_documented_setting_is_still_read():
    read = set(settings_read_by_code())
    stale = {name for name in doc_rows() if SETTING.fullmatch(name) and name not in read}
    assert not stale, (
        f"Settings documented in {DOC.relative_to(ROOT)} that no code reads any more "
        f"(remove their rows):\n{_listing(stale)}"
    )


def _conf_defaults() -> dict[str, list[ast.expr]]:
    """``NAME -> [default, …]`` from conf.py: the argument after the name in each call
    (``getattr(settings, NAME, default)``, ``_number(NAME, default)``, …)."""
    defaults: dict[str, list[ast.expr]] = {}
    for node in ast.walk(_tree(CONF_MODULE)):
        if isinstance(node, ast.Call):
            for index, argument in enumerate(node.args[:-1]):
                name = _string(argument)
                if name is not None and SETTING.fullmatch(name):
                    defaults.setdefault(name, []).append(node.args[index + 1])
    return defaults


def test_documented_defaults_are_conf_defaults():
    """The Default cell of each setting shows, in backticks, the default conf.py gives."""
    rows = doc_rows()
    wrong = []
    for name, found in sorted(_conf_defaults().items()):
        row = rows.get(name)
        if row is None:
            continue  # reported as undocumented above
        cell = row.cells.get("default", "")
        shown = []
        for span in CODE_SPAN.findall(cell):
            try:
                shown.append(ast.dump(ast.parse(span, mode="eval").body))
            except SyntaxError:
                continue
        for default in found:
            if ast.dump(default) not in shown:
                wrong.append(
                    f"{name} (docs line {row.line}): conf.py's default is "
                    f"`{ast.unparse(default)}`, the doc's Default cell is: {cell or '(none)'}"
                )
    assert not wrong, "Defaults in the doc that differ from conf.py:\n" + _listing(wrong)


def test_each_setting_default_is_written_once():
    """conf.py gives each setting's default in one place; no other module reads an
    ``EMAILSETTINGS_*`` setting itself (``psicogest/settings.py`` sets them)."""
    twice = {name: found for name, found in _conf_defaults().items() if len(found) > 1}
    assert not twice, "Settings read with a default more than once in conf.py:\n" + _listing(
        {name: [f"`{ast.unparse(d)}`" for d in found] for name, found in twice.items()}
    )
    direct = []
    for path in _python_sources():
        if path in (CONF_MODULE, SETTINGS_MODULE):
            continue
        for node in ast.walk(_tree(path)):
            is_getattr = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"getattr", "hasattr"}
                and len(node.args) >= 2
                and SETTING.fullmatch(_string(node.args[1]) or "")
            )
            is_attribute = isinstance(node, ast.Attribute) and SETTING.fullmatch(node.attr)
            if is_getattr or is_attribute:
                direct.append(f"{_where(path, node)}: {ast.unparse(node)}")
    assert not direct, (
        "EMAILSETTINGS_* settings read outside emailsettings/conf.py (add a function to "
        "conf.py and call it):\n" + _listing(direct)
    )


def test_setting_names_are_written_out_in_full():
    """A name built at run time (f"EMAILSETTINGS_{x}") would escape the scans above."""
    built = []
    for path in _python_sources():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.JoinedStr):
                parts = node.values
                built += [
                    _where(path, node)
                    for part, after in zip(parts, parts[1:], strict=False)
                    if SETTING_PREFIX.fullmatch(_string(part) or "")
                    and isinstance(after, ast.FormattedValue)
                ]
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
                if SETTING_PREFIX.fullmatch(_string(node.left) or "") or re.fullmatch(
                    r"EMAILSETTINGS_[A-Z0-9_]*%s", _string(node.left) or ""
                ):
                    built.append(_where(path, node))
    assert not built, "Setting names built at run time:\n" + _listing(built)
