"""Walks a Keras layer tree: every layer with its path, and which layer owns each variable.

Paths join layer names with "/" from the outermost model down, e.g.
"outer_model/inner_block/dense_2", so nested models are named the way users see them in
`model.summary()`.
"""

import keras

__all__ = []


def direct_sublayers(layer):
    """Returns the layers directly tracked by `layer` (not recursive), in tracking order."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=False))
    return list(getattr(layer, "layers", []))


def walk_layers(root):
    """Returns `[(path, layer, parent_path)]` for `root` and every layer below it, parents first.

    A layer reachable along several paths (shared between blocks) is listed once, under the
    first path found.
    """
    result = []
    seen = set()

    def visit(layer, path, parent_path):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        result.append((path, layer, parent_path))
        for child in direct_sublayers(layer):
            visit(child, f"{path}/{child.name}", path)

    visit(root, root.name, None)
    return result


def variable_owners(root):
    """Maps `id(variable)` to the path of the innermost layer that holds the variable."""
    owners = {}
    # Parents come first in walk_layers, so inner layers overwrite their containers.
    for path, layer, _ in walk_layers(root):
        for variable in layer.weights:
            owners[id(variable)] = path
    return owners


def is_floating(value):
    """True when `value` is a tensor or array with a floating dtype."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return False
    try:
        return "float" in keras.backend.standardize_dtype(dtype)
    except ValueError:
        return False
