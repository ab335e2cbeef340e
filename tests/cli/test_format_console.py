"""What the console shows: probe's table says what its columns are, the density line has
its scale, and the epoch line carries DCAO's adapted lr and momentum."""

from __future__ import annotations

import re

import torch

from cli._format import fmt
from cli._output import ProbeLine
from tests.cli.conftest import TINY, invoke, invoke_json

PROBE = ("probe", "--fit-steps", "5", "--samples", "100", "--model-arg", "widths=16",
         "--top-k", "2", "--density", "--density-vectors", "2", "--density-steps", "10",
         "--trace-matvecs", "8")


def test_probe_text_explains_residuals_mass_below_and_the_density_scale():
    data = invoke_json(*PROBE, "--json")
    lines = invoke(*PROBE).stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if "rel. residual" in line)
    for i, (v, r) in enumerate(zip(data["top_eigenvalues"], data["top_residuals"])):
        name, value, rel = lines[head + 1 + i].split()
        assert name == f"λ{i + 1}" and value == fmt(v)
        assert rel == fmt(r / abs(v), digits=2)  # relative to |λ|, not the norm itself
    text = "\n".join(lines)
    assert "rel. residual: ‖Hv − λv‖ / |λ|" in text and "--tol 0.001" in text
    assert re.search(r"mass below -\S+ \(−tol·max\|λ\|\): \d+\.\d% of the SLQ weight", text)
    spark = next(line for line in lines if "▕" in line)
    assert len(spark[spark.index("▕") + 1:spark.index("▏")]) == 60
    assert "height: log10 density per unit eigenvalue (σ " in text


def test_epoch_line_shows_dcaos_adapted_lr_and_momentum(tmp_path):
    out = tmp_path / "r.h5"
    common = ("--epochs", "1", "--probe-every", "0", "--checkpoint-every", "0", *TINY)
    dcao = invoke("train", "--optimizer", "dcao", "-o", out, *common).stdout
    line = next(line for line in dcao.splitlines() if "epoch 1/1" in line)
    m = re.search(r"  lr (\S+) momentum (\S+)  ", line)
    assert m, line
    assert float(m.group(1)) > 0 and 0 < float(m.group(2)) < 1
    sgd = invoke("train", "--optimizer", "sgd", "-o", tmp_path / "s.h5", *common).stdout
    assert "momentum" not in next(line for line in sgd.splitlines() if "epoch 1/1" in line)


class FakeBar:
    """What ProbeLine needs of a tqdm bar, recorded."""

    def __init__(self, *, total, desc, unit, leave):
        self.total, self.n, self.desc, self.postfix, self.closed = total, 0, desc, "", False

    def update(self, n):
        self.n += n

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def refresh(self):
        pass

    def close(self):
        self.closed = True


def test_probe_line_is_one_bar_of_products_done_over_the_budget():
    from spectra import DenseOperator, eigsh, trace

    line = ProbeLine(bar=FakeBar)
    op = DenseOperator(torch.diag(torch.linspace(1.0, 50.0, 50, dtype=torch.float64)))
    r = eigsh(op, k=2, progress=line)
    bar = line.bar
    assert bar.n == bar.total == r.num_matvecs  # the unspent budget is given back
    trace(op, num_matvecs=12, progress=line)
    assert line.bar is bar and bar.postfix == "trace"  # the same line, the part named
    assert bar.n == r.num_matvecs + 12 and bar.total == bar.n
    line.close()
    assert bar.closed and line.bar is None


def test_probe_is_silent_on_stderr_when_not_at_a_terminal():
    r = invoke(*PROBE)
    assert r.stderr == ""
