"""The msgx command line rejects bad input instead of ignoring it: --input/--shape names that are not model
inputs, --repeat below 1; and every command and sub-command takes -q/--quiet and --debug."""
import argparse

import numpy as np
import pytest

from framework import cli
from framework.cli import build_parser, main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("extra", [[], ["--model", "tiny_gpt"]])
def test_input_naming_no_model_input_is_input_name_error(tmp_path, capsys, extra):
    ids = tmp_path / "ids.npy"
    np.save(ids, np.zeros((1, 8), np.int64))
    assert main(["run", *extra, "--input", f"wrong={ids}", "--repeat", "1"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("msgx: error: InputNameError: ") and "'wrong'" in line and "['ids']" in line
    # a right name next to a wrong one is still an error: the wrong one would be silently dropped
    assert main(["run", *extra, "--input", f"ids={ids}", "--input", f"wrong={ids}", "--repeat", "1"]) == 2
    assert "'wrong'" in _one_error_line(capsys)


@pytest.mark.parametrize("extra", [[], ["-q"], ["--model", "tiny_gpt"]])
def test_shape_naming_no_model_input_is_input_name_error(capsys, extra):
    assert main(["run", *extra, "--shape", "foo=1x2", "--repeat", "1"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("msgx: error: InputNameError: ") and "'foo'" in line and "['ids']" in line


def test_shape_naming_no_input_of_a_model_file(tmp_path, capsys):
    assert main(["models", "export", str(tmp_path)]) == 0
    capsys.readouterr()
    for argv in (["run", str(tmp_path / "mobilenet.onnx"), "--shape", "img=1x3x8x8", "--repeat", "1"],
                 ["profile", str(tmp_path / "mobilenet.onnx"), "--shape", "img=1x3x8x8", "--repeat", "1"]):
        assert main(argv) == 2
        line = _one_error_line(capsys)
        assert line.startswith("msgx: error: InputNameError: ") and "'img'" in line and "['image']" in line
    assert main(["run", str(tmp_path / "mobilenet.onnx"), "--shape", "image=1x3x8x8", "--repeat", "1"]) == 0


def test_shape_of_wrong_rank_is_bad_input_exit_2(capsys):
    assert main(["run", "--shape", "ids=1x2x3", "--repeat", "1"]) == 2
    assert _one_error_line(capsys).startswith("msgx: error: InputShapeError: --shape ids has rank 3")


@pytest.mark.parametrize("command", ["run", "profile"])
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_repeat_below_one_is_usage_error(capsys, command, value):
    with pytest.raises(SystemExit) as e:
        main([command, "--repeat", value])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert f"msgx {command}: error: argument --repeat: expected a positive integer" in err


def test_repeat_counts_the_runs(capsys):
    assert main(["run", "--repeat", "3"]) == 0
    assert "latency over 3 run(s)" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["-q", "--quiet", "--debug"])
def test_models_export_takes_the_common_options(tmp_path, capsys, flag):
    assert main(["models", "export", str(tmp_path), flag]) == 0
    assert (tmp_path / "tiny_gpt.onnx").exists()
    out = capsys.readouterr()
    assert out.err == "" and (out.out == "") == (flag != "--debug")


def _all_parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, path + (name,))


def test_every_command_and_sub_command_takes_the_common_options():
    paths = []
    for path, parser in _all_parsers(build_parser()):
        paths.append(path)
        assert "-q" in parser._option_string_actions and "--quiet" in parser._option_string_actions, path
        assert "--debug" in parser._option_string_actions, path
    assert ("models", "export") in paths and ("run",) in paths


def test_common_options_after_a_pass_through_command(monkeypatch, capsys):
    """bench SUITE ... and conformance ... hand the rest to the suite's parser, which knows no -q/--debug."""
    seen = []
    monkeypatch.setattr(cli, "cmd_bench", lambda args: seen.append(args.rest) or print("out") or 0)
    monkeypatch.setattr(cli, "cmd_conformance", lambda args: seen.append(args.rest) or print("out") or 0)
    assert main(["bench", "models", "--quick", "-q"]) == 0
    assert main(["conformance", "--debug", "--suite", "node", "--quiet"]) == 0
    assert main(["bench", "ops", "--quick"]) == 0
    assert seen == [["--quick"], ["--suite", "node"], ["--quick"]]
    assert capsys.readouterr().out == "out\n"  # only the last run was not quiet
