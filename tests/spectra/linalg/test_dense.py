"""The adapter of operator-like objects: the device the solvers put their vectors on."""

import pytest
import torch

from spectra.linalg.dense import as_operator


class _Op:
    shape = (3, 3)

    def __init__(self, device):
        if device is not None:
            self.device = device

    def matvec(self, v):
        return 2 * v


@pytest.mark.parametrize("device", ["meta", torch.device("meta")])
def test_a_callback_operator_keeps_its_device_given_as_a_name_or_a_device(device):
    """``device = "cuda"`` (a name) must not send CPU vectors to a GPU operator."""
    assert as_operator(_Op(device)).device == torch.device("meta")


def test_a_callback_operator_without_a_device_is_on_the_cpu_and_a_bad_name_is_refused():
    assert as_operator(_Op(None)).device == torch.device("cpu")
    assert as_operator(_Op(3)).device == torch.device("cpu")  # not a device: not read as one
    with pytest.raises(ValueError, match="'gpu0' is not a torch device"):
        as_operator(_Op("gpu0"))
