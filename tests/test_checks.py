"""kala.checks: each check lets good values through as Keras wants them and names bad ones."""

import numpy as np
import pytest

from kala import checks


def test_good_values_pass_in_the_type_keras_wants():
    value = checks.integer("units", np.int64(8))
    assert value == 8 and type(value) is int
    assert checks.integer("seed", 0, minimum=0) == 0
    assert checks.positive_number("learning_rate", 1) == 1.0
    assert checks.fraction("dropout_rate", 0.0) == 0.0
    assert checks.one_of("use_cudnn", False, ("auto", False)) is False


@pytest.mark.parametrize("check, message", [
    (lambda: checks.integer("units", 0), "`units` must be an integer >= 1. Received: units=0"),
    (lambda: checks.integer("units", True), "Received: units=True"),
    (lambda: checks.integer("units", 2.0), "Received: units=2.0"),
    (lambda: checks.integer("seed", -1, minimum=0), "an integer >= 0. Received: seed=-1"),
    (lambda: checks.positive_number("clipnorm", float("inf")), "Received: clipnorm=inf"),
    (lambda: checks.positive_number("clipnorm", "1"), "Received: clipnorm='1'"),
    (lambda: checks.fraction("dropout_rate", 1.0), "in [0, 1). Received: dropout_rate=1.0"),
    (lambda: checks.boolean("reset_after", 1), "True or False. Received: reset_after=1"),
    # The type counts: 0 is not False, and a list holding a choice is not the choice.
    (lambda: checks.one_of("use_cudnn", 0, ("auto", False)), "Received: use_cudnn=0"),
    (lambda: checks.one_of("cell", ["lstm"], ("lstm", "gru")),
     "`cell` must be one of lstm, gru. Received: cell=['lstm']"),
])
def test_bad_values_raise_value_error_naming_what_was_received(check, message):
    with pytest.raises(ValueError) as error:
        check()
    assert message in str(error.value)
