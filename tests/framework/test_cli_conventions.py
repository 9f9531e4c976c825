"""CLI conventions: --help with examples, --version, exit codes, --quiet, one-line errors (--debug shows
the traceback), and --dump-ir."""
from importlib.metadata import version

import pytest

import onnx_models
from framework import cli
from framework.cli import main
from framework.compile import passes_for
from framework.ir import print_graph
from framework.session import InferenceSession


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "examples:" in out and "msgx show" in out and "exit codes" in out
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"msgx {version('msgx')}"


def test_quiet_prints_nothing(capsys):
    assert main(["run", "--quiet", "--repeat", "1"]) == 0
    assert main(["-q", "run", "--repeat", "1", "--shape", "ids=1x3"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_bad_input_is_one_line_exit_2_and_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("msgx: error: ModelError")
    assert main(["--debug", "run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("msgx: error")


def test_usage_errors_exit_2(tmp_path, capsys):
    for argv in (["run", str(tmp_path / "missing.onnx")], ["run", "--shape", "ids"], ["bench", "nosuch"],
                 ["run", "--mode", "pynative", "--dump-ir", str(tmp_path)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("msgx: error: "), (argv, err)


def test_internal_error_and_interrupt(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("a bug\nover two lines")
    monkeypatch.setattr(cli, "cmd_info", boom)
    assert main(["info", "x.onnx"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["msgx: internal error: RuntimeError: a bug over two lines "
                   "(rerun with --debug for the traceback)"]

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_info", interrupted)
    assert main(["info", "x.onnx"]) == 130


def test_dump_ir_writes_every_pass_numbered(tmp_path, capsys):
    d = tmp_path / "ir"
    assert main(["run", "--jit-level", "O1", "--repeat", "1", "--dump-ir", str(d)]) == 0
    names = ["00_input"] + [f"{i:02d}_{n}" for i, (n, _) in enumerate(passes_for("O1"), start=1)]
    assert sorted(p.stem for p in d.iterdir()) == names
    sess = InferenceSession(onnx_models.build("tiny_gpt"), jit_level="O1")
    assert (d / f"{names[-1]}.txt").read_text() == print_graph(sess.graph) + "\n"
    assert "msgx::Fused" in (d / f"{names[-1]}.txt").read_text()
