import pytest

from xstable.compare.findings import FINDING_KINDS, exit_status, parse_fail_on


def test_parse_fail_on():
    assert parse_fail_on("divergence, nan") == ("divergence", "nan")
    assert parse_fail_on("none") == ()
    assert parse_fail_on("any") == tuple(FINDING_KINDS)
    assert parse_fail_on(["error"]) == ("error",)
    with pytest.raises(ValueError, match=r"unknown kinds \['nans'\]"):
        parse_fail_on("nans")


def test_exit_status_follows_fail_on():
    findings = [{"kind": "nan", "backend": "torch", "message": "x"}]
    assert exit_status(findings, ("nan",)) == 1
    assert exit_status(findings, ("divergence", "error")) == 0
    assert exit_status([], tuple(FINDING_KINDS)) == 0
