"""The README and the docs pages hold: their pointers into the code, their links and figures,
and the serving page's commands, run as a user would."""

import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from conftest import ROOT


PAGES = ["README.md", "docs/findings.md", "docs/paper_1997.md", "docs/serving.md",
         "docs/performance.md", "docs/library.md", "docs/faults.md", "saved_models/README.md"]


def page(name):
    with open(os.path.join(ROOT, name)) as file:
        return file.read()


def test_the_front_page_is_short():
    assert len(page("README.md").splitlines()) < 300


def test_every_line_the_findings_point_at_in_the_cells_holds_the_code_it_quotes():
    with open(os.path.join(ROOT, "kala", "cells.py")) as file:
        lines = file.read().splitlines()
    pointers = re.findall(r"\[L(\d+)\]\(\.\./kala/cells\.py#L(\d+)\)\s+`([^`]+)`",
                          page("docs/findings.md"))
    assert len(pointers) >= 11  # The LSTM's steps and one line of each variant.
    for shown, target, code in pointers:
        assert shown == target
        assert code in lines[int(target) - 1], f"line {target} of kala/cells.py is not {code!r}"


@pytest.mark.parametrize("name", PAGES)
def test_every_local_link_and_figure_of_a_page_exists(name):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page(name)):
        if target.startswith(("http://", "https://")):
            continue
        path = os.path.normpath(os.path.join(ROOT, os.path.dirname(name), target))
        assert os.path.exists(path), f"{name} links to {target}, which does not exist"


@pytest.mark.parametrize("name", PAGES)
def test_every_anchor_a_page_links_to_is_a_heading_there(name):
    for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page(name)):
        linked = os.path.normpath(os.path.join(os.path.dirname(name), target)) if target else name
        if not linked.endswith(".md"):
            continue  # A line of code (cells.py#L162): the pointers test checks those.
        headings = re.findall(r"^#+ (.+)$", page(linked), re.MULTILINE)
        slugs = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
                 for heading in headings}
        assert anchor in slugs, f"{name}: no heading #{anchor} in {linked}"


# --- The serving page, run as a user would. --------------------------------------------------

def serving_section():
    return page("docs/serving.md")


def code_blocks(text, language):
    """The fenced blocks of `text` in `language` ("" for plain ones), in order."""
    blocks, current, fence = [], None, None
    for line in text.splitlines(keepends=True):
        if current is None and line.startswith("```"):
            current, fence = [], line[3:].strip()
        elif current is not None and line.startswith("```"):
            if fence == language:
                blocks.append("".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def commands(block):
    """The commands of a bash block, continuation lines joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def needs_a_server(command):
    return command.startswith(("docker ", "curl "))


def run_here(args, cwd, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A scratch directory where the section's commands ran as shown (all but the server's),
    with what each printed."""
    workdir = tmp_path_factory.mktemp("serving")
    os.symlink(os.path.join(ROOT, "recipes"), workdir / "recipes")
    printed = {}
    for block in code_blocks(serving_section(), "bash"):
        for command in commands(block):
            if not needs_a_server(command):
                process = run_here(["bash", "-c", command], workdir)
                assert process.returncode == 0, f"{command}\n{process.stderr[-3000:]}"
                printed[command] = process.stdout
    return workdir, printed


def signatures_of(workdir, model):
    return tf.saved_model.load(str(workdir / "saved_models" / model / "1")).signatures


def test_the_serving_commands_print_what_the_page_shows(served):
    workdir, printed = served
    section = serving_section()
    (check,) = [output for command, output in printed.items() if "kala.serving check" in command]
    assert check == code_blocks(section, "")[0]  # The report, line for line.
    (run,) = [output for command, output in printed.items() if "saved_model_cli run" in command]
    # The claims, not one machine's decimals: float32 sums come out in another order on another
    # CPU, so the trained model's probability differs between machines; its answer does not.
    word, probability = re.search(
        r"answers `word` `\[b'(\w+)'\]` with `probability` ([0-9]+\.[0-9]+)", section).groups()
    assert f"[b'{word}']" in run and float(probability) > 0.5
    assert float(re.search(r"output key probability:\n\[([0-9.]+)\]", run).group(1)) > 0.5
    text, word = re.search(r'ask it "([^"]+)" and it answers (\w+) too', section).groups()
    answer = signatures_of(workdir, "lstm_walkthrough")["serve_text"](text=tf.constant([text]))
    assert answer["word"].numpy()[0].decode() == word.lower()
    assert answer["probability"].numpy()[0] > 0.5


def test_kala_ask_answers_each_export_as_the_page_says(served):
    _, printed = served
    asked = {command.split()[3].split("/")[1]: output for command, output in printed.items()
             if command.startswith("python -m kala.ask saved_models/")}
    assert sorted(asked) == ["adding_problem", "char_language_model", "lstm_walkthrough"]
    assert re.fullmatch(r"french \(probability 0\.\d{3}\)\n", asked["lstm_walkthrough"])
    output, total = map(float, re.fullmatch(
        r"output: (\S+)\n\(the sum of the values marked 1: (\S+)\)\n",
        asked["adding_problem"]).groups())
    assert abs(output - total) < 0.1  # The model solved the task: test MSE below 0.01.
    first, second = asked["char_language_model"].splitlines()[:2]
    assert first.startswith("next character: ") and second.startswith("writes on ")


def test_the_step_by_step_program_sums_the_two_marked_numbers(served):
    workdir, _ = served
    program = [block for block in code_blocks(serving_section(), "python")
               if '.signatures["step"]' in block][0]
    process = run_here([sys.executable, "-c", program], workdir)
    assert process.returncode == 0, process.stderr[-3000:]
    answer, total = map(float, re.fullmatch(r"(\S+), the sum being (\S+)\n",
                                            process.stdout).groups())
    assert abs(answer - total) < 0.1  # The model solved the task: test MSE below 0.01.


def test_the_grpc_client_builds_a_request_the_export_answers(served):
    from kala import export

    workdir, _ = served
    (client,) = [block for block in code_blocks(serving_section(), "python") if "grpc" in block]
    # Without a server (not installable here), the call fails at the network, not in the code.
    process = run_here([sys.executable, "-c", client], workdir)
    assert process.returncode == 1 and "StatusCode.UNAVAILABLE" in process.stderr
    # The request itself, replayed against the export as TF Serving would hand it over.
    namespace = {}
    exec(client[:client.index("\nstub =")], namespace)
    request = namespace["request"]
    loaded = tf.saved_model.load(str(workdir / "saved_models" / request.model_spec.name / "1"))
    assert export.replay(loaded, request)["word"].tolist() == [b"french"]


def test_the_curl_bodies_fit_the_signatures_they_name(served):
    """Not TF Serving: the page's request bodies, read as TF Serving's REST API documents them
    (`instances`: one entry per sequence; `inputs`: one entry per input), are sent to the
    signatures of the exports loaded with `tf.saved_model.load`."""
    workdir, _ = served
    curls = [command for block in code_blocks(serving_section(), "bash")
             for command in commands(block) if command.startswith("curl ")]
    assert len(curls) == 4
    for command in curls:
        model, verb = re.search(r"/v1/models/(\w+)(:predict|/metadata)", command).groups()
        signatures = signatures_of(workdir, model)
        if verb == "/metadata":
            continue  # A GET of the model's signatures: the model exists.
        body = json.loads(re.search(r"-d '(.*)'$", command).group(1))
        signature = signatures[body.get("signature_name", "serving_default")]
        specs = signature.structured_input_signature[1]
        if "instances" in body:
            (name,) = specs  # A list of values for the only input.
            inputs = {name: body["instances"]}
        else:
            inputs = body["inputs"]
        answer = signature(**{name: tf.constant(value, specs[name].dtype)
                              for name, value in inputs.items()})
        if "word" in answer:
            assert answer["word"].numpy().tolist() == [b"french"]
        if "text" in answer:  # generate: as many characters as asked.
            assert len(answer["text"].numpy()[0].decode("utf-8")) == inputs["length"]


def test_the_bad_requests_get_the_messages_the_page_shows(served):
    workdir, _ = served
    section = serving_section()
    adding, words = signatures_of(workdir, "adding_problem"), signatures_of(workdir,
                                                                              "lstm_walkthrough")
    units = words["step"].structured_input_signature[1]["lstm_1_h"].shape[1]
    generate = signatures_of(workdir, "char_language_model")["generate"]

    def generating(length, temperature):
        return lambda: generate(prompt=tf.constant(["def "]), length=tf.constant(length),
                                temperature=tf.constant(temperature), seed=tf.constant(0))

    requests = {
        "wrong rank or feature size": lambda: adding["serving_default"](sequence=tf.zeros((1, 3))),
        "a sequence of no steps": lambda: adding["serving_default"](
            sequence=tf.zeros((1, 0, 2))),
        "an empty text in `serve_text`": lambda: words["serve_text"](text=tf.constant([""])),
        "a state whose batch differs from the step's": lambda: words["step"](
            tokens=tf.constant([1]), lstm_1_h=tf.zeros((2, units)),
            lstm_1_c=tf.zeros((1, units))),
        "an empty batch (over gRPC or in Python; TF Serving's REST API refuses an empty "
        "`instances` list)": lambda: adding["serving_default"](sequence=tf.zeros((0, 4, 2))),
        "an empty batch of texts": lambda: words["serve_text"](text=tf.constant([], tf.string)),
        "NaN or infinity in a request's numbers": lambda: adding["serving_default"](
            sequence=tf.constant([[[0.5, 1.0], [float("nan"), 0.0]]])),
        "`generate` with a `length` over the export's maximum": generating(1001, 1.0),
        "`generate` with a `temperature` of 0 or less, or not finite": generating(5, 0.0),
    }
    for row, request in requests.items():
        message = re.search(rf"\| {re.escape(row)} \| `([^`]+)` \|", section).group(1)
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            request()
        assert message in str(raised.value), row
