"""Argument checks: each checker's known answers, and one error for a bad argument everywhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skullstrip_lib.errors import InvalidArgumentError, SkullstripError
from skullstrip_lib.validate import (
    check_choice,
    check_input_shape,
    check_int,
    check_number,
    check_optional_int,
)


def rejects(call, argument: str, message: str) -> InvalidArgumentError:
    """The error ``call()`` raises: the one class, a ValueError, one line naming ``argument``."""
    with pytest.raises(InvalidArgumentError) as info:
        call()
    error = info.value
    assert isinstance(error, ValueError) and isinstance(error, SkullstripError)
    assert error.argument == argument
    assert str(error) == message
    return error


# --------------------------------------------------------------------------- the error
def test_the_error_is_a_value_error_whose_message_starts_with_the_argument():
    error = InvalidArgumentError("depth", "must be an integer >= 1, got 0")
    assert isinstance(error, ValueError) and isinstance(error, SkullstripError)
    assert str(error) == "depth must be an integer >= 1, got 0"
    assert (error.argument, error.problem) == ("depth", "must be an integer >= 1, got 0")


# --------------------------------------------------------------------------- check_int
@pytest.mark.parametrize(("value", "kwargs", "expected"), [
    (1, {}, 1),
    (np.int64(7), {}, 7),
    (np.uint8(0), {"minimum": 0}, 0),
    (10000, {"minimum": 1, "maximum": 10000}, 10000),
    (-3, {"minimum": -5}, -3),
])
def test_check_int_accepts(value, kwargs, expected):
    out = check_int(value, "n", **kwargs)
    assert out == expected and type(out) is int


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    (0, {}, "n must be an integer >= 1, got 0"),
    (True, {}, "n must be an integer >= 1, got True"),  # a bool is not a count
    (2.0, {}, "n must be an integer >= 1, got 2.0"),
    ("3", {}, "n must be an integer >= 1, got '3'"),
    (None, {"minimum": 0}, "n must be an integer >= 0, got None"),
    (10001, {"minimum": 1, "maximum": 10000}, "n must be an integer from 1 to 10000, got 10001"),
])
def test_check_int_rejects(value, kwargs, message):
    rejects(lambda: check_int(value, "n", **kwargs), "n", message)


# --------------------------------------------------------------------------- check_optional_int
def test_check_optional_int():
    assert check_optional_int(None, "n_subjects") is None
    assert check_optional_int(np.int32(3), "n_subjects") == 3
    rejects(lambda: check_optional_int(0, "n_subjects"), "n_subjects",
            "n_subjects must be an integer >= 1 or None, got 0")
    rejects(lambda: check_optional_int(2.5, "n_subjects"), "n_subjects",
            "n_subjects must be an integer >= 1 or None, got 2.5")
    rejects(lambda: check_optional_int(11, "n", 1, 10), "n",
            "n must be an integer from 1 to 10 or None, got 11")


# --------------------------------------------------------------------------- check_number
@pytest.mark.parametrize(("value", "kwargs", "expected"), [
    (0, {"minimum": 0, "maximum": 1, "open_maximum": True}, 0.0),
    (np.float32(0.5), {"minimum": 0, "maximum": 1}, 0.5),
    (1, {"minimum": 0, "maximum": 1}, 1.0),
    (1e-9, {"minimum": 0, "open_minimum": True}, 1e-9),
    (-2.5, {}, -2.5),
])
def test_check_number_accepts(value, kwargs, expected):
    out = check_number(value, "x", **kwargs)
    assert out == expected and type(out) is float


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    (0, {"minimum": 0, "open_minimum": True}, "x must be a positive number, got 0"),
    (-1, {"minimum": 0}, "x must be a number >= 0, got -1"),
    (1.0, {"minimum": 0, "maximum": 1, "open_maximum": True},
     "x must be a number in [0, 1), got 1.0"),
    (0.0, {"minimum": 0, "maximum": 1, "open_minimum": True},
     "x must be a number in (0, 1], got 0.0"),
    (3, {"maximum": 2}, "x must be a number <= 2, got 3"),
    (1, {"minimum": 1, "open_minimum": True}, "x must be a number > 1, got 1"),
    (math.nan, {}, "x must be a finite number, got nan"),
    (math.inf, {"minimum": 0}, "x must be a number >= 0, got inf"),
    (True, {}, "x must be a finite number, got True"),
    ("0.5", {}, "x must be a finite number, got '0.5'"),
])
def test_check_number_rejects(value, kwargs, message):
    rejects(lambda: check_number(value, "x", **kwargs), "x", message)


# --------------------------------------------------------------------------- check_choice
def test_check_choice():
    norms = ("instance", "group", "batch", None)
    assert check_choice(None, "norm", norms) is None
    assert check_choice("batch", "norm", norms) == "batch"
    assert check_choice("full", "profile", {"sample": {}, "full": {}}) == "full"  # a mapping's keys
    rejects(lambda: check_choice("layer", "norm", norms), "norm",
            "norm must be one of 'instance', 'group', 'batch' or None, got 'layer'")
    rejects(lambda: check_choice("gpu", "profile", ("sample",)), "profile",
            "profile must be one of 'sample', got 'gpu'")
    # Values that cannot be compared with a name (unhashable, an array) are refused, not a crash.
    rejects(lambda: check_choice(["batch"], "norm", norms), "norm",
            "norm must be one of 'instance', 'group', 'batch' or None, got ['batch']")
    with pytest.raises(InvalidArgumentError, match="^norm must be one of"):
        check_choice(np.array(["batch", "group"]), "norm", norms)


# --------------------------------------------------------------------------- check_input_shape
def test_check_input_shape():
    out = check_input_shape([np.int64(96), 128, 160, 1], depth=5)
    assert out == (96, 128, 160, 1) and all(type(v) is int for v in out)
    assert check_input_shape((5, 7, 9, 2), depth=1) == (5, 7, 9, 2)  # no pooling: any size
    rejects(lambda: check_input_shape((32, 32, 32), 2), "input_shape",
            "input_shape must be (X, Y, Z, channels), 4 numbers, got (32, 32, 32)")
    rejects(lambda: check_input_shape(32, 2), "input_shape",
            "input_shape must be (X, Y, Z, channels), 4 numbers, got 32")
    rejects(lambda: check_input_shape((32, 32, 32.0, 1), 2), "input_shape",
            "input_shape axis Z must be a positive integer, got 32.0")
    rejects(lambda: check_input_shape((32, 32, 32, 0), 2), "input_shape",
            "input_shape axis C must be a positive integer, got 0")
    rejects(lambda: check_input_shape((32, 30, 32, 1), 4), "input_shape",
            "input_shape axis Y is 30, not divisible by 2**(depth-1) = 8 (depth 4 halves the grid "
            "3 times); pad or crop it to 24 or 32")
    rejects(lambda: check_input_shape((4, 8, 8, 1), 4), "input_shape",
            "input_shape axis X is 4, not divisible by 2**(depth-1) = 8 (depth 4 halves the grid "
            "3 times); pad or crop it to 8 or 8")
    rejects(lambda: check_input_shape((32, 32, 32, 1), 0), "depth",
            "depth must be an integer >= 1, got 0")


# --------------------------------------------------------------------------- one mistake, one error
@pytest.mark.parametrize("n_subjects", [0, -1, 2.5, "3", True])
def test_a_bad_subject_count_reads_the_same_in_datasets_and_synth(tmp_path, n_subjects):
    """Once InvalidInputError (fetch_nfbs), a ValueError or, for 2.5 or "3", a TypeError
    (write_nfbs_dataset) and another ValueError (write_nfbs_archive); now one error."""
    from skullstrip_lib.datasets import fetch_nfbs
    from skullstrip_lib.synth import write_nfbs_archive, write_nfbs_dataset

    calls = {
        "fetch_nfbs": lambda: fetch_nfbs(tmp_path / "data", n_subjects=n_subjects,
                                         url="http://127.0.0.1:9/NFBS_Dataset.tar.gz"),
        "write_nfbs_archive": lambda: write_nfbs_archive(tmp_path / "a.tar.gz", n_subjects),
    }
    if n_subjects != 0:  # an empty synthetic data set is allowed
        calls["write_nfbs_dataset"] = lambda: write_nfbs_dataset(tmp_path / "synth", n_subjects)
    for name, call in calls.items():
        with pytest.raises(InvalidArgumentError, match="^n_subjects must be an integer ") as info:
            call()
        assert info.value.argument == "n_subjects", name
        assert f"got {n_subjects!r}" in str(info.value), name
    assert list(tmp_path.iterdir()) == []  # refused before any folder or download


def test_an_empty_synthetic_data_set_is_allowed(tmp_path):
    from skullstrip_lib.synth import write_nfbs_dataset

    assert write_nfbs_dataset(tmp_path, 0, progress=False) == []


def test_a_bad_training_profile_is_the_same_error():
    """Once a plain SkullstripError, not a ValueError."""
    from skullstrip_lib.train import resolve_config

    rejects(lambda: resolve_config("huge"), "profile",
            "profile must be one of 'sample', 'default' or 'full', got 'huge'")
