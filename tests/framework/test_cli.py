"""The msgx command line, run in-process through its main()."""
import numpy as np
import pytest

from framework.cli import main


def test_run_default_model(capsys):
    assert main(["run", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "bundled model 'tiny_gpt'" in out and "logits: float32[2, 16, 256]" in out and "latency" in out


def test_run_pynative_with_shape(capsys):
    assert main(["run", "--model", "tiny_gpt", "--mode", "pynative", "--shape", "ids=3x5", "--repeat", "1"]) == 0
    assert "logits: float32[3, 5, 256]" in capsys.readouterr().out


def test_export_then_run_and_info(tmp_path, capsys):
    assert main(["models", "export", str(tmp_path)]) == 0
    path = tmp_path / "mobilenet.onnx"
    assert path.exists()
    np.save(tmp_path / "img.npy", np.zeros((1, 3, 24, 24), np.float32))
    assert main(["run", str(path), "--input", f"image={tmp_path / 'img.npy'}", "--repeat", "1"]) == 0
    assert "logits: float32[1, 10]" in capsys.readouterr().out
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "image: tensor(float) ['batch', 3, 'height', 'width']" in out and "Conv" in out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    assert main(["run", str(bad)]) == 2
    assert "ModelError" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--shape", "ids=axb"])
