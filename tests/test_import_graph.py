"""xstable's packages import each other without cycles (deferred imports included)."""

import ast
import pathlib

import xstable

_ROOT = pathlib.Path(xstable.__file__).parent
# The deprecated `xstable.optimizers.GuardMonitor` subclasses the callbacks' StabilityMonitor
# while the callbacks read the guarded optimizer: the one edge left until the alias moves
# into `xstable.callbacks` or goes.
_KNOWN = {("optimizers.guard_monitor", "callbacks")}


def _unit(module):
    """The node a module belongs to: `xstable` (the package root), a subpackage or a module."""
    parts = module.split(".")
    return "xstable" if len(parts) == 1 else parts[1]


def _imports(path):
    """Every `xstable...` module a file imports, at any depth of the file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "xstable")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "xstable":
                continue
            if node.module == "xstable":
                # `from xstable import _distribution` imports that module, not the root's names.
                for alias in node.names:
                    submodule = _ROOT / alias.name
                    is_module = submodule.is_dir() or submodule.with_suffix(".py").exists()
                    yield f"xstable.{alias.name}" if is_module else "xstable"
            else:
                yield node.module


def import_graph():
    """`{unit: {unit it imports: [importing module, ...]}}` over xstable's sources."""
    graph = {}
    for path in sorted(_ROOT.rglob("*.py")):
        relative = path.relative_to(_ROOT.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        source = _unit(module)
        for imported in _imports(path):
            target = _unit(imported)
            if target == source or (module.split(".", 1)[-1], target) in _KNOWN:
                continue
            graph.setdefault(source, {}).setdefault(target, []).append(module)
    return graph


def _cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_xstable_packages():
    graph = import_graph()
    cycles = _cycles(graph)
    details = [
        f"{a} -> {b} via {graph[a][b]}"
        for component in cycles
        for a in component
        for b in component
        if b in graph.get(a, {})
    ]
    assert cycles == [], "import cycles:\n" + "\n".join(details)


def test_the_cycle_check_sees_a_cycle():
    graph = {"a": {"b": ["a.x"]}, "b": {"c": ["b.y"]}, "c": {"a": ["c.z"]}, "d": {"a": ["d"]}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_engine_sits_below_its_readers():
    graph = import_graph()
    assert "inspection" in graph["diagnosis"] and "inspection" in graph["compare"]
    assert not {"diagnosis", "compare"} & set(graph["inspection"])
    assert "diagnosis" not in graph.get("layers", {})
