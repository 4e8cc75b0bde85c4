"""Argument checks: each raises `ValueError` naming the argument, what it received and what it
expected, in Keras's own wording, and returns the value as Keras wants it (a Python `int` for a
NumPy integer).

They guard what the library's own code relies on. Where Keras already checks an argument and
says so clearly, the library leaves the check to Keras.

This module imports nothing from kala.
"""

import math
import numbers


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(name, value, minimum=1):
    """`value` as an `int`, if it is an integer >= `minimum` (a bool is not)."""
    if not _is_integer(value) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def positive_number(name, value):
    """`value` as a `float`, if it is a finite number above 0."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def fraction(name, value):
    """`value` as a `float`, if it is a number in [0, 1)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    return float(value)


def boolean(name, value):
    """`value`, if it is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def one_of(name, value, choices):
    """`value`, if it is one of `choices`."""
    # The type counts too: 0 is not False, and 1.0 is not 1.
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise ValueError(f"`{name}` must be one of {', '.join(map(str, choices))}. "
                         f"Received: {name}={value!r}")
    return value
