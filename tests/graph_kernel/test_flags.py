"""graph_kernel_flags parsing: MindSpore's flag spellings, defaults, errors naming flag and values."""
import dataclasses

import pytest

from framework.errors import ContextError
from graph_kernel.flags import DEFAULT_DUMP_DIR, GraphKernelFlags, parse_flags


def test_defaults():
    f = parse_flags("")
    assert f == GraphKernelFlags() == parse_flags(None) == parse_flags("   ")
    assert f.opt_level == 2 and f.kernel_generator == "auto" and f.dump_as_text is None and f.enabled
    assert f.enable_expand_ops == frozenset() and f.to_string() == ""


def test_all_flags():
    f = parse_flags("--opt_level=1  --enable_cluster_ops=MatMul,Conv --disable_cluster_ops=Transpose\n"
                    "--enable_expand_ops=Relu --disable_expand_ops=Gelu,Softmax --disable_pass=split,stack "
                    "--kernel_generator=dvm --dump_as_text=/tmp/gk")
    assert f.opt_level == 1
    assert f.enable_cluster_ops == {"MatMul", "Conv"} and f.disable_cluster_ops == {"Transpose"}
    assert f.enable_expand_ops == {"Relu"} and f.disable_expand_ops == {"Gelu", "Softmax"}
    assert f.disable_pass == {"split", "stack"} and f.kernel_generator == "dvm"
    assert f.dump_as_text == "/tmp/gk"
    assert parse_flags(f.to_string()) == f


def test_opt_level_zero_disables_and_later_flags_win():
    f = parse_flags("--opt_level=2 --opt_level=0")
    assert f.opt_level == 0 and not f.enabled


def test_bare_dump_as_text_uses_default_dir_and_lists_tolerate_spaces_around_commas():
    assert parse_flags("--dump_as_text").dump_as_text == DEFAULT_DUMP_DIR
    assert parse_flags("--disable_expand_ops=Gelu,,Softmax,").disable_expand_ops == {"Gelu", "Softmax"}
    assert parse_flags("--enable_cluster_ops=").enable_cluster_ops == frozenset()


def test_frozen_and_passthrough():
    f = parse_flags("--kernel_generator=poly")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.opt_level = 0
    assert parse_flags(f) is f
    assert hash(f) == hash(parse_flags("--kernel_generator=poly"))


@pytest.mark.parametrize("text,match", [
    ("--opt_levle=1", r"unknown flag --opt_levle; accepted flags: --opt_level, .*--dump_as_text"),
    ("--opt_level=3", r"--opt_level='3' is not valid; accepted values: 0, 1, 2"),
    ("--opt_level=x", r"accepted values: 0, 1, 2"),
    ("--opt_level", r"--opt_level needs a value"),
    ("--kernel_generator=akg", r"--kernel_generator='akg' is not valid; accepted values: auto, dvm, poly"),
    ("--kernel_generator", r"--kernel_generator needs a value"),
    ("--enable_expand_ops=Gelu,1x", r"--enable_expand_ops has a bad name '1x'"),
    ("--dump_as_text=", r"--dump_as_text= needs a directory"),
    ("opt_level=1", r"'opt_level=1' is not a flag"),
    ("--", r"'--' is not a flag"),
    ("--enable_expand_ops=Relu --disable_expand_ops=Relu", r"Relu both enabled and disabled"),
    ("--enable_cluster_ops=A,B --disable_cluster_ops=B", r"B both enabled and disabled in --enable_cluster"),
])
def test_errors_name_the_flag_and_accepted_values(text, match):
    with pytest.raises(ContextError, match=match):
        parse_flags(text)


def test_non_string_is_rejected():
    with pytest.raises(ContextError, match="must be a string"):
        parse_flags(["--opt_level=1"])
