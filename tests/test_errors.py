"""Errors name parameters; the CLI shows the flags that set them."""
import pickle

from compress.common.errors import EXIT_PARITY, CompressError
from compress.training.config import FitConfig
from compress_cli.app import flag


def test_library_message_names_the_parameter_and_the_cli_the_flag():
    try:
        FitConfig(epochs=-1)
    except CompressError as e:
        err = e
    assert str(err).startswith("epochs must be >= 0, batch_size >= 1") and err.param == "epochs"
    assert err.render(flag).startswith("--epochs must be >= 0, --batch-size >= 1")


def test_marked_and_unmarked_parameters():
    e = CompressError("`out_dir` /x exists; set `force` to replace it", param=("out_dir", "force"))
    assert str(e) == "out_dir /x exists; set force to replace it"
    assert e.render(flag) == "--out /x exists; set --force to replace it"
    e = CompressError("unknown criterion 'x'", param="criterion")   # unmarked and not leading: left as is
    assert e.render(flag) == "unknown criterion 'x'"
    assert CompressError("keeps must be ratios", param="keeps").render(flag) == "--keep must be ratios"


def test_survives_a_process_boundary():
    e = pickle.loads(pickle.dumps(CompressError("`atol` too big", EXIT_PARITY, param="atol")))
    assert (str(e), e.exit_code, e.params) == ("atol too big", EXIT_PARITY, ("atol",))
