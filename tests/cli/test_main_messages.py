"""Errors speak CLI: the library's argument names become the options a user typed
(cli._errors.speak_cli), and refused option values name their option."""

from __future__ import annotations

import pytest
import torch

from cli._errors import speak_cli
from tests.cli.conftest import TINY, invoke


@pytest.mark.parametrize(("text", "spoken"), [
    ("slq with num_vectors=4, num_steps=80 needs 9 GiB; lower num_vectors or num_steps",
     ("slq with --density-vectors 4, --density-steps 80 needs 9 GiB; lower --density-vectors "
     "or --density-steps")),
    ("a.h5 hold 2 runs (a, b); pass name= to pick one", ("a.h5 hold 2 runs (a, b); pass --run "
     "NAME to pick one")),
    ("choose another name, pass overwrite=True to replace it",
     "choose another name, pass --overwrite to replace it"),
    ("top_k=9 exceeds P=3; ask for top_k <= 3", "--top-k 9 exceeds P=3; ask for --top-k <= 3"),
    ("load the data as images (e.g. load_dataset('digits', image=True))",
     "load the data as images (e.g. --data-arg image=true)"),
    # other names, and the option names themselves, are left as they are
    ("max_matvecs=3, the run name, --top-k 2", "max_matvecs=3, the run name, --top-k 2"),
])
def test_speak_cli(text, spoken):
    assert speak_cli(text) == spoken


def test_the_librarys_own_memory_messages_become_options():
    from spectra.linalg.density import plan_memory
    from spectra.linalg.trace import check_memory

    huge = 10**13  # parameters: no device holds these bases
    with pytest.raises(ValueError) as slq:
        plan_memory(huge, 4, 80, torch.float32, "cpu", mode="full")
    with pytest.raises(ValueError) as trace:
        check_memory(huge, 60, torch.float32, "cpu")
    for exc, options in ((slq, ("--density-vectors 4", "--density-steps 80")),
                         (trace, ("--trace-matvecs 60",))):
        text = speak_cli(str(exc.value))
        assert all(o in text for o in options), text
        assert "num_vectors" not in text and "num_matvecs" not in text


@pytest.mark.parametrize(("args", "start"), [
    (("probe", "--fit-steps", "0", "--model-arg", "widht=3"), "error: --model-arg: "),
    (("probe", "--fit-steps", "0", "--data-arg", "ntrain=3"), "error: --data-arg: "),
    (("train", "--optimizer", "sgd", "--opt-arg", "lr=-1", "--epochs", "1"), "error: --opt-arg: "),
    (("compare", "--optimizers", "sgd,adam", "--opt-arg", "sgd.lr=-1", "--epochs", "1"),
     "error: --opt-arg (sgd): "),
])
def test_refused_option_values_name_the_option(tmp_path, args, start):
    out = ["-o", tmp_path / "r.h5"] if args[0] != "probe" else []
    tiny = TINY if args[0] != "probe" else []
    r = invoke(*args, *out, *tiny, ok=False)
    assert r.exit_code == 2 and r.stderr.startswith(start), r.stderr
    assert "rerun with --debug" not in r.stderr
    assert not (tmp_path / "r.h5").exists()
