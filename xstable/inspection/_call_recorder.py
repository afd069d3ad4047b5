"""Records the inputs and outputs of every layer call of a model, nested models included.

Every layer of the tree gets an instance-level `call` that wraps the class's own one, so
Sequential, Functional and subclassed models, and layers nested inside them, are all seen
without rebuilding the model. While installed, the recorder can also add zero "probe"
tensors to each call's inputs and outputs: the gradient of the loss with respect to a probe
is the gradient with respect to that layer input or output, which is how the backward pass
is followed layer by layer on every backend (JAX cannot differentiate with respect to an
intermediate value any other way). Adding zero leaves every value unchanged.

The recorder is plain Python, so it works the same eagerly and while `tf.function` or
`jax.jit` traces the step; records keep only a weak reference to their layer, so a cached
trace's records do not keep the model alive.
"""

import weakref

import keras

from xstable._layer_tree import is_floating, walk_layers

__all__ = []


class CallRecord:
    """One layer call: where it sits and which tensors went in and came out."""

    def __init__(self, index, path, layer, parent):
        self.index = index
        self.path = path
        self.name = layer.name
        self.class_name = type(layer).__name__
        self._layer = weakref.ref(layer)
        self.parent = parent
        self.end_order = None
        self.inputs = []
        self.outputs = []
        # Positions, in probe-creation order, of the probes added to inputs and outputs.
        self.input_probes = []
        self.output_probes = []

    @property
    def layer(self):
        return self._layer()

    def ancestors(self, records):
        parent = self.parent
        while parent is not None:
            yield parent
            parent = records[parent].parent


def _floating_leaves(structure):
    return [leaf for leaf in keras.tree.flatten(structure) if is_floating(leaf)]


class CallRecorder:
    """Context manager that records every layer call of `root` (and `root` itself).

    Args:
        root: The model to instrument.
        make_probe: Optional `make_probe(tensor) -> zero tensor`, called for every floating
            leaf of each call's first input and of its output (in that order, as the calls
            happen); the probe is added to the leaf. See
            `xstable.backend.value_and_probe_gradients`.
    """

    def __init__(self, root, make_probe=None):
        self.root = root
        self.make_probe = make_probe
        self.probe_count = 0
        self.records = []
        self._stack = []
        self._ends = 0
        self._installed = []
        self._paths = {}

    def __enter__(self):
        for path, layer, _ in walk_layers(self.root):
            previous = vars(layer).get("call")
            object.__setattr__(layer, "call", self._wrap(layer, path, layer.call))
            self._installed.append((layer, previous))
        return self

    def __exit__(self, *exc_info):
        for layer, previous in reversed(self._installed):
            vars(layer).pop("call", None)
            if previous is not None:
                object.__setattr__(layer, "call", previous)
        self._installed = []
        return False

    def _add_probes(self, structure, positions):
        if self.make_probe is None:
            return structure
        flat = keras.tree.flatten(structure)
        for i, leaf in enumerate(flat):
            if is_floating(leaf):
                flat[i] = leaf + self.make_probe(leaf)
                positions.append(self.probe_count)
                self.probe_count += 1
        return keras.tree.pack_sequence_as(structure, flat)

    def _wrap(self, layer, path, original):
        def recorded_call(*args, **kwargs):
            index = len(self.records)
            parent = self._stack[-1] if self._stack else None
            calls_of_path = sum(1 for r in self.records if r.layer is layer)
            name = path if calls_of_path == 0 else f"{path}[call {calls_of_path + 1}]"
            record = CallRecord(index, name, layer, parent)
            self.records.append(record)
            self._stack.append(index)
            try:
                if args:
                    args = (self._add_probes(args[0], record.input_probes),) + tuple(args[1:])
                    record.inputs = _floating_leaves(args[0])
                outputs = original(*args, **kwargs)
                outputs = self._add_probes(outputs, record.output_probes)
            finally:
                self._stack.pop()
            record.outputs = _floating_leaves(outputs)
            record.end_order = self._ends
            self._ends += 1
            return outputs

        return recorded_call
