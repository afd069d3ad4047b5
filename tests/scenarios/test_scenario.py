import keras
import pytest

from xstable.scenarios import Scenario, Variant, expect
from xstable.training import TrainingSpec


def _spec():
    return TrainingSpec("s", lambda: keras.Sequential([keras.Input((1,))]), dict, dict)


def _variant(kind="failure", **kwargs):
    return Variant(
        kind=kind,
        make_spec=kwargs.pop("make_spec", _spec),
        summary="s",
        origin=kwargs.pop("origin", "document"),
        changes=kwargs.pop("changes", ()),
        expected=kwargs.pop("expected", expect("ok")),
    )


def test_expect_fills_every_backend_and_requires_a_reason_to_differ():
    outcomes, reason = expect("nan", torch="ok", reason="torch clamps the log at -100")
    assert outcomes == {"tensorflow": "nan", "torch": "ok", "jax": "nan"}
    assert reason
    with pytest.raises(ValueError, match="`reason` must say why"):
        expect("nan", torch="ok")
    with pytest.raises(ValueError, match="Unknown backend names"):
        expect("nan", numpy="ok")
    with pytest.raises(ValueError, match="must be one of"):
        expect("crashed")


def test_variant_validates_its_fields():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        _variant(kind="fix")
    with pytest.raises(ValueError, match="`origin` must be one of"):
        _variant(origin="blog")
    with pytest.raises(TypeError, match="`changes` must be a tuple"):
        _variant(changes=["a"])
    with pytest.raises(TypeError, match="`make_spec` must be a callable"):
        _variant(make_spec=None)
    with pytest.raises(TypeError, match="not a `TrainingSpec`"):
        _variant(make_spec=dict).spec()
    variant = _variant(expected=expect("ok", jax="nan", reason="r"))
    assert variant.expected_outcome("jax") == "nan" and variant.expected_reason == "r"
    with pytest.raises(ValueError, match="No expectation for backend"):
        variant.expected_outcome("numpy")


def _scenario(variants):
    return Scenario("a.b", "doc.txt", "t", 1, "claim", "nan", variants)


def test_scenario_needs_failure_and_document_fix_under_their_own_kinds():
    failure, fix = _variant("failure"), _variant("document_fix")
    scenario = _scenario({"document_fix": fix, "failure": failure})
    assert scenario.variant_kinds() == ("failure", "document_fix")
    with pytest.raises(KeyError, match="has no 'stress' variant"):
        scenario.variant("stress")
    with pytest.raises(ValueError, match="needs a 'document_fix' variant"):
        _scenario({"failure": failure})
    with pytest.raises(ValueError, match="register each variant under its own kind"):
        _scenario({"failure": fix, "document_fix": fix})
    with pytest.raises(ValueError, match="`claimed_outcome`"):
        Scenario("a", "d", "t", 1, "c", "boom", {})
