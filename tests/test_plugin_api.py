"""The plugin API is the ``__all__`` of imgedit's core modules: the built-in
plugins (and the plugin template) import nothing else from the core, so a
third-party author can tell what is stable and a maintainer what is safe to
rename (docs/plugin-guide.md, "The plugin API")."""

import ast
import importlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_ROOTS = (ROOT / "plugins", ROOT / "examples" / "plugin-template")
GUIDE = ROOT / "docs" / "plugin-guide.md"


def _plugin_files() -> list[Path]:
    """Every .py file of the built-in plugins and the template, build/ folders left out."""
    return sorted(
        path
        for root in PLUGIN_ROOTS
        for path in root.rglob("*.py")
        if "build" not in path.relative_to(root).parts
    )


def _is_core(module: str) -> bool:
    return module == "imgedit" or module.startswith("imgedit.")


def _is_submodule(module: str, name: str) -> bool:
    """Whether ``from module import name`` imports the submodule ``module.name``."""
    return hasattr(importlib.import_module(module), "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None


def _core_uses(path: Path) -> list[tuple[int, str, str]]:
    """(line, core module, name) for every name ``path`` takes from a core module.

    ``from imgedit.X import a`` uses ``a`` of imgedit.X (inside functions too);
    a core module bound to a name (``from imgedit import registry``,
    ``import imgedit.X as x``, ``import imgedit.X``) uses each attribute read
    from it (``registry.reset``, ``x.a``, ``imgedit.X.a``).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    uses: list[tuple[int, str, str]] = []
    bound: dict[str, str] = {}  # local name -> core module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_core(node.module):
            for alias in node.names:
                if _is_submodule(node.module, alias.name):
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                else:
                    uses.append((node.lineno, node.module, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_core(alias.name):
                    bound[alias.asname or "imgedit"] = alias.name if alias.asname else "imgedit"
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue  # a.b.c is read once, from its outermost node
        chain = []  # imgedit.training.fit -> ["imgedit", "training", "fit"]
        value = node
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if not (isinstance(value, ast.Name) and value.id in bound):
            continue
        module, rest = bound[value.id], chain
        while len(rest) > 1 and _is_submodule(module, rest[0]):
            module, rest = f"{module}.{rest[0]}", rest[1:]
        uses.append((node.lineno, module, rest[0]))
    return sorted(set(uses))


def _all_uses() -> list[tuple[str, int, str, str]]:
    return [(str(path.relative_to(ROOT)), line, module, name) for path in _plugin_files() for line, module, name in _core_uses(path)]


def _used_modules() -> list[str]:
    return sorted({module for _, _, module, _ in _all_uses()})


def test_the_scan_sees_the_plugins_imports():
    uses = _all_uses()
    assert any(path.startswith("examples/") for path, *_ in uses), "the plugin template's imports were not found"
    found = {(module, name) for _, _, module, name in uses}
    assert ("imgedit", "hookimpl") in found
    assert ("imgedit.registry", "reset") in found  # from imgedit import registry; registry.reset()
    assert ("imgedit.verbs", "add_operation_verb") in found  # imported inside a hook implementation


def test_plugins_import_only_the_plugin_api():
    problems = []
    for path, line, module, name in _all_uses():
        public = getattr(importlib.import_module(module), "__all__", None)
        if public is None:
            problems.append(f"{path}:{line}: uses {module}.{name}, but {module} has no __all__: "
                            f"give it one listing its plugin API, and describe it in docs/plugin-guide.md ('The plugin API')")
        elif name not in public:
            private = " (a private name: make it public under another name first)" if name.startswith("_") else ""
            problems.append(f"{path}:{line}: uses {name!r} from {module}, which is not in {module}.__all__{private}: "
                            f"add it to {module}.__all__ and document it in docs/plugin-guide.md ('The plugin API'), "
                            f"or use a name that is there")
    assert not problems, "plugins use core names outside the plugin API:\n" + "\n".join(problems)


def test_every_name_in_the_plugin_api_exists():
    problems = []
    for module in _used_modules():
        mod = importlib.import_module(module)
        public = list(getattr(mod, "__all__", ()))
        problems += [f"{module}.__all__ lists {name!r} twice" for name in sorted(set(public)) if public.count(name) > 1]
        problems += [f"{module}.__all__ lists {name!r}, which {module} does not have" for name in public if not hasattr(mod, name)]
    assert not problems, "\n".join(problems)


def test_the_plugin_guide_names_every_module_of_the_plugin_api():
    guide = GUIDE.read_text(encoding="utf-8")
    assert "\n## The plugin API\n" in guide, "docs/plugin-guide.md has no section 'The plugin API'"
    section = guide.split("\n## The plugin API\n", 1)[1].split("\n## ", 1)[0]
    missing = [module for module in _used_modules() if f"`{module}`" not in section]
    assert not missing, f"docs/plugin-guide.md ('The plugin API') does not describe {', '.join(missing)}: add a line for each"
