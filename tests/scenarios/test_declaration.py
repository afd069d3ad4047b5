import collections

import keras
import numpy as np
import pytest

from xstable.scenarios import all_scenarios
from xstable.scenarios import xstable_fixes as fixes
from xstable.scenarios.declaration import (
    Case,
    DenseStack,
    FixCase,
    SeedExample,
    Setting,
    build_scenarios,
)
from xstable.scenarios.registry import DOCUMENT_MODULES, document_scenarios
from xstable.scenarios.scenario import expect
from xstable.training import TrainingSpec

ALL = [(s, kind) for s in all_scenarios() for kind in s.variant_kinds()]


def _data():
    return np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")


_SETTING = Setting(DenseStack(2, ((3, "relu"), (1, None))), _data, epochs=2)
_CASE = Case(_SETTING, summary="s", origin="document", expected=expect("ok"))


def _get(scenario_id):
    return next(s for s in all_scenarios() if s.id == scenario_id)


def _compiled_optimizer(spec):
    optimizer = spec.make_compile_args()["optimizer"]
    return optimizer if isinstance(optimizer, str) else type(optimizer).__name__


def _content(spec):
    """What a spec trains: its data, its model's layers and its optimizer."""
    x, y = spec.make_data()
    model = spec.build_model()
    layers = [(type(layer).__name__, layer.get_config().get("units")) for layer in model.layers]
    return x.tobytes(), y.tobytes(), layers, spec.epochs, _compiled_optimizer(spec)


def test_every_declared_variant_builds_a_spec_with_data_model_and_compile_arguments():
    for scenario, kind in ALL:
        spec = scenario.variant(kind).spec()
        assert isinstance(spec, TrainingSpec)
        assert spec.name.startswith(scenario.id.split(".")[0] + "."), spec.name
        x, y = spec.make_data()
        assert x.dtype == np.float32 and len(x) == len(y), spec.name
        model = spec.build_model()
        assert isinstance(model, keras.Sequential) and model.built, spec.name
        assert {"optimizer", "loss"} <= set(spec.make_compile_args()), spec.name


def test_variants_that_share_a_spec_name_share_what_it_trains():
    # `run_all` trains a spec name once, so one name must always mean the same setting.
    by_name = collections.defaultdict(list)
    for scenario, kind in ALL:
        by_name[scenario.variant(kind).spec().name].append((scenario.id, kind))
    shared = {name: users for name, users in by_name.items() if len(users) > 1}
    assert "linear_fit.unscaled.stress" in shared
    assert "after_normalization.tanh_large_inputs.xstable_fix" in shared
    for name, users in shared.items():
        contents = {repr(_content(_get(sid).variant(kind).spec())) for sid, kind in users}
        assert len(contents) == 1, f"{name} names different settings in {users}"


def test_each_document_module_declares_its_examples_once_in_document_order():
    ids = [s.id for module in DOCUMENT_MODULES for s in document_scenarios(module)]
    assert ids == [s.id for s in all_scenarios()]
    assert len(ids) == len(set(ids)) == 12
    for module in DOCUMENT_MODULES:
        numbers = sorted(example.number for example in module.EXAMPLES)
        assert numbers == [1, 2, 3], module.__name__


def test_dense_stack_builds_its_layers_and_assigns_the_output_bias():
    model = DenseStack(3, ((4, "tanh"), (1, "sigmoid")), output_bias=2.5).build()
    assert [layer.units for layer in model.layers] == [4, 1]
    assert model.layers[0].activation is keras.activations.tanh
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[-1].bias), [2.5])
    assert model.input_shape == (None, 3)


def test_setting_builds_a_fresh_optimizer_per_run_and_passes_names_as_they_are():
    assert _SETTING.compile_args() == {"optimizer": "adam", "loss": "mse"}
    setting = Setting(_SETTING.model, _data, epochs=1, optimizer=("SGD", {"learning_rate": 0.5}))
    first, second = setting.compile_args()["optimizer"], setting.compile_args()["optimizer"]
    assert isinstance(first, keras.optimizers.SGD) and first is not second
    assert float(first.learning_rate) == 0.5
    spec = setting.spec("a.failure")
    assert spec.name == "a.failure" and spec.epochs == 1
    named = Setting(_SETTING.model, _data, epochs=1, name="shared.stress")
    assert named.spec("b.stress").name == "shared.stress"


def test_builder_names_specs_after_example_and_kind_and_the_fix_after_its_stress():
    fix = FixCase(fixes.XstableFix(answers=("custom-loss",)), changes=("c",))
    example = SeedExample(
        id="doc.case",
        number=1,
        claim="claim",
        claimed_outcome="nan",
        changes=("common",),
        failure=_CASE,
        document_fix=Case(_SETTING, "fix", "derived", expect("ok"), changes=("d",)),
        stress=Case(
            Setting(_SETTING.model, _data, epochs=2, name="other.case.stress"),
            "stress",
            "ours",
            expect("nan"),
        ),
        xstable_fix=fix,
    )
    (scenario,) = build_scenarios("doc.txt", "Title", [example])
    assert scenario.variant_kinds() == ("failure", "stress", "document_fix", "xstable_fix")
    assert scenario.variant("failure").spec().name == "doc.case.failure"
    assert scenario.variant("stress").spec().name == "other.case.stress"
    assert scenario.variant("xstable_fix").spec().name == "other.case.xstable_fix"
    assert scenario.variant("document_fix").changes == ("common", "d")
    assert scenario.variant("xstable_fix").changes[:2] == ("common", "c")
    assert scenario.variant("xstable_fix").fix is fix.fix
    assert (scenario.document, scenario.title, scenario.example) == ("doc.txt", "Title", 1)


def test_declarations_reject_what_the_builder_cannot_build():
    with pytest.raises(ValueError, match="without a `stress` case"):
        SeedExample(
            "a.b",
            1,
            "claim",
            "nan",
            (),
            failure=_CASE,
            document_fix=_CASE,
            xstable_fix=FixCase(fixes.XstableFix(answers=("custom-loss",))),
        )
    with pytest.raises(TypeError, match="`examples` must hold `SeedExample`s"):
        build_scenarios("doc.txt", "Title", [_CASE])
