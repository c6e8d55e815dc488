"""The package's import graph: no cycles, no private names across modules.

Every `import` statement of every module is read with `ast`, those inside functions
included (a lazy import is still an edge: it only hides a cycle until the function
runs). `from sgma_keras import layers` is an edge to the submodule `sgma_keras.layers`;
an import of a name defined in a package's `__init__` is an edge to that package.

The one exception is a module's `if __name__ == "__main__":` block: it runs only when
the module is the program (`python -m sgma_keras.config`), never when it is imported,
so its imports are not edges (`python -m sgma_keras.config` runs the workflow's
command, which imports `sgma_keras.config` itself).
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "sgma_keras"


def _modules():
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(module):
    return MODULES[module].endswith("__init__.py")


def _absolute(module, node):
    """The absolute module name of an ImportFrom (handles `from . import x`)."""
    if not node.level:
        return node.module
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_main_block(node):
    """`if __name__ == "__main__":`"""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare)
            and ast.unparse(test).replace("'", '"') == '__name__ == "__main__"')


def _import_nodes(tree):
    """Every import statement of a module but those of its `__main__` block."""
    skipped = {id(n) for top in tree.body if _is_main_block(top) for n in ast.walk(top)}
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
            and id(n) not in skipped]


def _imports(module):
    """(target module, imported name or None, line) of every import of `module`."""
    tree = ast.parse(open(MODULES[module], encoding="utf-8").read())
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            if target and target.split(".")[0] == PACKAGE:
                for alias in node.names:
                    yield target, alias.name, node.lineno


def _edges(module):
    for target, name, _ in _imports(module):
        sub = f"{target}.{name}" if name else None
        if sub in MODULES:
            yield sub
        elif target in MODULES:
            yield target


def _graph():
    return {m: sorted(set(_edges(m)) - {m}) for m in MODULES}


def _find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_walker_sees_lazy_imports_and_finds_cycles():
    # evaluation imports checkpoints; cli imports training inside a function.
    graph = _graph()
    assert "sgma_keras.workflow.checkpoints" in graph["sgma_keras.workflow.evaluation"]
    assert "sgma_keras.workflow.training" in graph["sgma_keras.workflow.cli"]
    assert _find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": ["b"], "b": []}) is None


def test_the_walker_skips_only_the_main_block():
    tree = ast.parse("import a\n"
                     "def f():\n    import b\n"
                     "if __name__ == '__main__':\n    import c\n"
                     "if __name__ == 'other':\n    import d\n")
    assert [n.names[0].name for n in _import_nodes(tree)] == ["a", "b", "d"]
    # `python -m sgma_keras.config` runs the workflow's config command from that block.
    source = open(MODULES["sgma_keras.config"], encoding="utf-8").read()
    assert "from sgma_keras.workflow.cli import config_main" in source
    assert not [t for t in _graph()["sgma_keras.config"] if t.startswith("sgma_keras.workflow")]


def test_no_import_cycles():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_private_names_across_modules():
    """`from x import _name` and `module._name` stay inside the module that owns them."""
    offences = []
    for module in MODULES:
        source = open(MODULES[module], encoding="utf-8").read()
        tree = ast.parse(source)
        aliases = {}
        for target, name, line in _imports(module):
            if name and name.startswith("_") and not name.startswith("__"):
                offences.append(f"{module}:{line} imports {target}.{name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE):
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module, node)
                for alias in node.names:
                    if target and f"{target}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                owner = ast.unparse(node.value)
                if owner in aliases and aliases[owner] != module:
                    offences.append(f"{module}:{node.lineno} uses {owner}.{node.attr}")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize("layer", ["sgma_keras.layers", "sgma_keras.data", "sgma_keras.model",
                                   "sgma_keras.losses", "sgma_keras.config"])
def test_model_and_data_never_import_the_workflow(layer):
    graph = _graph()
    below = [m for m in graph if m == layer or m.startswith(layer + ".")]
    for module in below:
        assert not [t for t in graph[module] if t.startswith("sgma_keras.workflow")], module
