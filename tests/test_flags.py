"""recipes/flags.py: a settings dataclass becomes flags, with help from the fields' comments."""

import dataclasses
import os
import sys
import typing

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
import flags  # noqa: E402


@dataclasses.dataclass
class Settings:
    cell: typing.Literal["lstm", "gru"] = "lstm"  # the recurrent cell
    gaps: tuple[int, ...] = (10, 50)  # the gaps to sweep
    learning_rate: typing.Literal["tuned"] | tuple[float, ...] = "tuned"  # tuned, or rates
    seed: int = 0  # seed of everything
    steps: int = 100  # budget in steps
    smoke: bool = False  # a tiny run
    full: bool = False  # the whole run


def parse(*argv):
    return flags.parse(Settings, "A lesson.", list(argv), smoke={"steps": 5}, full={"steps": 500})


def test_flags_take_the_fields_types():
    settings = parse("--cell", "gru", "--gaps", "3, 4,5", "--learning-rate", "1e-3,1e-2",
                     "--seed", "0")
    assert settings == Settings(cell="gru", gaps=(3, 4, 5), learning_rate=(1e-3, 1e-2), seed=0)
    assert parse("--learning-rate", "tuned").learning_rate == "tuned"


def test_presets_apply_before_the_flags_given_and_exclude_each_other(capsys):
    assert parse("--smoke").steps == 5 and parse("--smoke").smoke is True
    assert parse("--smoke", "--steps", "7").steps == 7
    with pytest.raises(SystemExit) as exit:
        parse("--smoke", "--full")
    assert exit.value.code == 2
    assert "--smoke and --full exclude each other" in capsys.readouterr().err


def test_help_shows_each_fields_comment_default_and_choices(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "A lesson." in text
    assert "--cell CELL the recurrent cell (default: lstm; choices: lstm, gru)" in text
    assert "--gaps GAPS the gaps to sweep (default: 10,50)" in text
    assert "--learning-rate LEARNING_RATE tuned, or rates (default: tuned; choices: tuned)" in text
    assert "--smoke a tiny run" in text


@pytest.mark.parametrize("argv, message", [
    (["--cell", "rnn"], "argument --cell: invalid choice: 'rnn' (choose from lstm, gru)"),
    (["--gaps", "10,x"], "argument --gaps: expected an integer, got 'x'"),
    (["--gaps", ","], "argument --gaps: expected comma-separated values, none of them empty, "
                      "got ','"),
    (["--gaps", "2,,4"], "argument --gaps: expected comma-separated values, none of them empty, "
                         "got '2,,4'"),
    (["--learning-rate", "inf"], "expected a finite number, got 'inf'"),
    (["--learning-rate", "1e-3,nan"], "expected a finite number, got 'nan'"),
    (["--steps", "0"], "argument --steps: expected a positive number, got '0'"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["--learning-rate", "fast"], "invalid choice: 'fast' (choose from tuned); or expected a "
                                  "number, got 'fast'"),
])
def test_a_bad_flag_is_one_line_and_exit_code_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        parse(*argv)
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


@dataclasses.dataclass
class ManyCells:
    cells: tuple[str, ...] = ("simple_rnn+irnn", "lstm+zero_forget_bias", "lstm+chrono",
                              "peephole_lstm", "coupled_lstm", "simple_rnn+irnn")  # the cells


def test_help_breaks_a_long_list_after_its_commas_never_inside_a_word(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    with pytest.raises(SystemExit):
        flags.parse(ManyCells, "A lesson.", ["--help"])
    out = capsys.readouterr().out
    help_lines = out[out.index("--cells CELLS  ") + len("--cells CELLS"):].splitlines()
    listed = "".join(line.strip() for line in help_lines)
    assert "simple_rnn+irnn,lstm+zero_forget_bias,lstm+chrono,peephole_lstm,coupled_lstm" in listed
    assert len(help_lines) > 1 and all(line.rstrip().endswith((",", ")")) for line in help_lines)
