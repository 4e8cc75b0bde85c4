"""The README's pointers into the code point where they say."""

import os
import re

from conftest import ROOT


def test_every_line_the_readme_points_at_in_the_cells_holds_the_code_it_quotes():
    with open(os.path.join(ROOT, "README.md")) as file:
        readme = file.read()
    with open(os.path.join(ROOT, "kala", "cells.py")) as file:
        lines = file.read().splitlines()
    pointers = re.findall(r"\[L(\d+)\]\(kala/cells\.py#L(\d+)\)\s+`([^`]+)`", readme)
    assert len(pointers) >= 11  # The LSTM's steps and one line of each variant.
    for shown, target, code in pointers:
        assert shown == target
        assert code in lines[int(target) - 1], f"README: line {target} of kala/cells.py is not {code!r}"
