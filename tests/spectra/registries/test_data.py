"""Tests of spectra.registries.data: every reader on small files written in the standard formats."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from spectra.registries.data import (
    DataError,
    DataSpec,
    available_datasets,
    batches,
    load_dataset,
    read_idx,
)

# ----------------------------------------------------------------- writers of the formats

_IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
              np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX as published with MNIST: 0, 0, type code, ndim, big-endian dims, big-endian data."""
    code = _IDX_CODES[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def make_mnist(directory: Path, n_train: int = 12, n_test: int = 5, gz: bool = False,
               seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8)[::-1].copy(),
    }
    for name, array in arrays.items():
        write_idx(directory / (name + (".gz" if gz else "")), array)
    return arrays


def make_cifar10(root: Path, per_batch: int = 3, n_test: int = 4) -> tuple[np.ndarray, list]:
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images, labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        lab = [int(v) for v in rng.integers(0, 10, per_batch)]  # a list, as in the real files
        with open(directory / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"batch_label": f"training batch {i} of 5".encode(), b"labels": lab,
                         b"data": data, b"filenames": [b"x.png"] * per_batch}, fh)
        images.append(data)
        labels += lab
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test[0] = 0
    test[0, 1024 + 32 * 2 + 5] = 255  # green plane, row 2, column 5
    with open(directory / "test_batch", "wb") as fh:
        pickle.dump({b"labels": [9] * n_test, b"data": test}, fh)
    return np.concatenate(images), labels


def make_cifar100(root: Path, n_train: int = 6, n_test: int = 3) -> None:
    directory = root / "cifar-100-python"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name, n in (("train", n_train), ("test", n_test)):
        with open(directory / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": [99 - i for i in range(n)],
                         b"coarse_labels": [19 - i for i in range(n)]}, fh)


# ----------------------------------------------------------------- digits


def test_digits_default_split_and_scaling() -> None:
    d = load_dataset()
    assert d.name == "digits" and d.task == "classification" and d.num_classes == 10
    assert d.train_x.shape == (1438, 64) and d.test_x.shape == (359, 64)
    assert d.input_shape == (64,)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert d.train_x.min() == 0.0 and d.train_x.max() == 1.0
    counts = torch.bincount(d.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~20% of each class
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data / 16.0, dtype=torch.float32)
    both = torch.cat([d.train_x, d.test_x])
    assert both.shape == x.shape  # a partition of the 1797 images
    assert torch.equal(torch.sort(both.sum(1)).values, torch.sort(x.sum(1)).values)


def test_digits_options_and_seeds() -> None:
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    c = load_dataset("digits", seed=4)
    assert not torch.equal(a.train_y, c.train_y)
    img = load_dataset("digits", seed=3, image=True)
    assert img.train_x.shape == (1438, 1, 8, 8) and img.input_shape == (1, 8, 8)
    assert torch.equal(img.train_x.reshape(-1, 64), a.train_x)
    small = load_dataset("digits", n_train=100, n_test=50)
    assert small.train_x.shape == (100, 64) and small.test_x.shape == (50, 64)
    std = load_dataset("digits", standardize=True)
    assert std.train_x.mean(0).abs().max() < 1e-5
    nonconst = std.train_x.std(0) > 0.5
    assert torch.allclose(std.train_x.std(0, unbiased=False)[nonconst], torch.ones(1), atol=1e-4)
    assert load_dataset("digits", test_fraction=0.5).test_x.shape[0] in range(890, 910)
    with pytest.raises(DataError, match="n_train must be between 1 and 1438"):
        load_dataset("digits", n_train=5000)


# ----------------------------------------------------------------- IDX / MNIST


@pytest.mark.parametrize("dtype", list(_IDX_CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_type(tmp_path: Path, dtype, gz: bool) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_malformed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x01\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"abc")
    with pytest.raises(DataError, match=r"says \(5,\).*holds 3"):
        read_idx(short)
    fake_gz = tmp_path / "x.gz"
    fake_gz.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(fake_gz)


def test_read_idx_names_a_corrupt_gzip_stream(tmp_path: Path) -> None:
    """A good gzip header over a corrupt deflate stream raised zlib.error (not an
    OSError), past the DataError the module promises."""
    good = gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 1000) + bytes(1000))
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(good[:10] + bytes([0xFF] * 8) + good[18:])  # invalid deflate block
    with pytest.raises(DataError, match=r"cannot read \(.*invalid block type"):
        read_idx(path)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("layout", ["flat", "named", "torchvision"])
def test_mnist_like_from_idx_files(tmp_path: Path, name: str, layout: str) -> None:
    directory = {"flat": tmp_path, "named": tmp_path / name,
                 "torchvision": tmp_path / {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name] / "raw"}[layout]
    arrays = make_mnist(directory, gz=layout == "named")
    d = load_dataset(name, data_dir=tmp_path)
    assert d.name == name and d.num_classes == 10 and d.input_shape == (1, 28, 28)
    assert d.train_x.shape == (12, 1, 28, 28) and d.test_x.shape == (5, 1, 28, 28)
    expected = torch.tensor(arrays["train-images-idx3-ubyte"] / 255.0, dtype=torch.float32)
    assert torch.allclose(d.train_x[:, 0], expected)
    assert d.train_y.tolist() == list(np.arange(12) % 10) and d.train_y.dtype == torch.int64
    assert d.test_y.tolist() == [4, 3, 2, 1, 0]
    flat = load_dataset(name, data_dir=tmp_path, image=False, n_train=4)
    assert flat.train_x.shape == (4, 784) and flat.input_shape == (784,)


def test_fashion_mnist_is_read_from_its_own_folder_before_data_dir_itself(tmp_path: Path) -> None:
    """MNIST and Fashion-MNIST files share their names: with MNIST's in data_dir itself
    and Fashion's in FashionMNIST/raw, "fashion-mnist" read MNIST's."""
    make_mnist(tmp_path, seed=1)  # MNIST, in data_dir itself
    fashion = make_mnist(tmp_path / "FashionMNIST" / "raw", seed=2)
    d = load_dataset("fashion-mnist", data_dir=tmp_path)
    expected = torch.tensor(fashion["train-images-idx3-ubyte"] / 255.0, dtype=torch.float32)
    assert torch.equal(d.train_x[:, 0], expected)
    assert load_dataset("mnist", data_dir=tmp_path).train_x.shape[0] == 12  # still found


def test_an_incomplete_fashion_folder_is_named_not_replaced_by_mnist(tmp_path: Path) -> None:
    """With 3 of Fashion-MNIST's 4 files in its folder and MNIST's in data_dir itself,
    "fashion-mnist" silently loaded MNIST."""
    make_mnist(tmp_path, seed=1)
    make_mnist(tmp_path / "fashion-mnist", seed=2)
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"fashion-mnist holds 3 of its 4 IDX files; "
                                                r"missing t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    assert load_dataset("mnist", data_dir=tmp_path).train_x.shape[0] == 12  # MNIST unaffected


def test_labels_that_are_not_integers_are_refused(tmp_path: Path) -> None:
    """A float label file was truncated to classes (8.7 read as 8)."""
    make_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([8.7, 6.7, 5.2, 2.9, 3.1], np.float32))
    with pytest.raises(DataError, match=r"expected uint8 labels \(IDX type 08\), got float32"):
        load_dataset("mnist", data_dir=tmp_path)
    make_cifar10(tmp_path / "c")
    with open(tmp_path / "c" / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({b"labels": [1.9, 2.5, 3.2, 0.1],
                     b"data": np.zeros((4, 3072), np.uint8)}, fh)
    with pytest.raises(DataError, match=r"b'labels' must hold integer labels, got float64 values"):
        load_dataset("cifar10", data_dir=tmp_path / "c")


def test_mnist_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mnist(tmp_path / "mnist")
    monkeypatch.setenv("SPECTRA_DATA_DIR", str(tmp_path))
    assert load_dataset("mnist").train_x.shape[0] == 12


def test_mnist_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", data_dir=tmp_path / "nowhere")
    msg = str(err.value)
    assert isinstance(err.value, DataError)
    for fname in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "nowhere", "MNIST/raw"):
        assert fname in msg
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))  # 5 images
    with pytest.raises(DataError, match="expected 5 labels"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(5, 12, np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.9, found 12\.\.12"):
        load_dataset("mnist", data_dir=tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset("mnist", data_dir=tmp_path)


# ----------------------------------------------------------------- CIFAR


def test_cifar10_from_python_batches(tmp_path: Path) -> None:
    images, labels = make_cifar10(tmp_path)
    d = load_dataset("cifar10", data_dir=tmp_path)
    assert d.train_x.shape == (15, 3, 32, 32) and d.test_x.shape == (4, 3, 32, 32)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert d.train_y.tolist() == labels and d.test_y.tolist() == [9] * 4
    expected = torch.tensor(images.reshape(15, 3, 32, 32) / 255.0, dtype=torch.float32)
    assert torch.allclose(d.train_x, expected)
    # channel-major layout: 1024 red, 1024 green, 1024 blue values, rows of 32
    assert d.test_x[0, 1, 2, 5] == 1.0 and d.test_x[0].sum() == 1.0
    same = load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py", image=False)
    assert same.train_x.shape == (15, 3072) and torch.equal(same.train_x, d.train_x.reshape(15, -1))


def test_a_cifar_batch_never_runs_code(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as fh:
        pickle.dump({b"labels": [0], b"data": Evil()}, fh)
    with pytest.raises(DataError, match="never allowed to run code"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    fine = load_dataset("cifar100", data_dir=tmp_path)
    assert fine.num_classes == 100 and fine.train_y.tolist() == [99, 98, 97, 96, 95, 94]
    coarse = load_dataset("cifar100", data_dir=tmp_path, label="coarse")
    assert coarse.num_classes == 20 and coarse.test_y.tolist() == [19, 18, 17]
    assert torch.equal(fine.train_x, coarse.train_x)
    with pytest.raises(DataError, match="'fine' or 'coarse'"):
        load_dataset("cifar100", data_dir=tmp_path, label="medium")


def test_cifar_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "data_batch_1" in str(err.value) and "test_batch" in str(err.value)
    assert "cifar-10-batches-py" in str(err.value)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", data_dir=tmp_path)
    make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with open(batch, "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, fh)
    with pytest.raises(DataError, match=r"data_batch_3: missing keys \[b'labels'\]"):
        load_dataset("cifar10", data_dir=tmp_path)
    with open(batch, "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataError, match=r"must be \(N, 3072\) uint8"):
        load_dataset("cifar10", data_dir=tmp_path)
    batch.write_bytes(b"\x00not a pickle")
    with pytest.raises(DataError, match="data_batch_3: not a CIFAR python pickle"):
        load_dataset("cifar10", data_dir=tmp_path)


# ----------------------------------------------------------------- synthetic


def test_a_digits_split_that_leaves_a_side_empty_is_refused() -> None:
    """test_fraction=0.998 gave no training sample (and NaN statistics with standardize),
    0.002 an empty test set."""
    for fraction, side in ((0.998, "no training"), (0.002, "no test")):
        with pytest.raises(DataError, match=rf"test_fraction={fraction} leaves {side} sample of class"):
            load_dataset("digits", test_fraction=fraction)


def test_synthetic_refuses_the_other_tasks_options() -> None:
    """task="regression" with num_classes=7 and separation=99 gave the default data."""
    with pytest.raises(DataError, match=r"num_classes, separation are options of "
                                        r"task='classification', not of task='regression'"):
        load_dataset("synthetic", task="regression", num_classes=7, separation=99.0)
    with pytest.raises(DataError, match=r"noise is an option of task='regression', not of "
                                        r"task='classification'"):
        load_dataset("synthetic", noise=0.5)
    assert load_dataset("synthetic", task="regression", num_targets=2).train_y.shape[1] == 2


def test_synthetic_classification_and_regression() -> None:
    c = load_dataset("synthetic", n_train=64, n_test=32, dim=5, num_classes=4, seed=1)
    assert c.train_x.shape == (64, 5) and c.test_x.shape == (32, 5)
    assert c.task == "classification" and c.num_classes == 4 and c.train_y.dtype == torch.int64
    assert set(c.train_y.tolist()) <= {0, 1, 2, 3}
    assert torch.equal(c.train_x, load_dataset("synthetic", n_train=64, n_test=32, dim=5,
                                                num_classes=4, seed=1).train_x)
    r = load_dataset("synthetic", task="regression", n_train=400, dim=6, noise=0.1, seed=2)
    assert r.task == "regression" and r.train_y.shape == (400, 1) and r.num_classes == 1
    assert r.train_y.dtype == torch.float32 and r.input_shape == (6,)
    # a linear teacher: least squares leaves only the noise
    x, y = r.train_x.double(), r.train_y.double()
    w = torch.linalg.lstsq(x, y).solution
    assert 0.08 < (y - x @ w).std() < 0.12
    multi = load_dataset("synthetic", task="regression", num_targets=3)
    assert multi.train_y.shape == (512, 3) and multi.num_classes == 3
    with pytest.raises(DataError, match="task must be"):
        load_dataset("synthetic", task="ranking")


# ----------------------------------------------------------------- registry, specs, batches


def test_names_options_and_spec_round_trip(tmp_path: Path) -> None:
    assert available_datasets() == ["cifar10", "cifar100", "digits", "fashion-mnist",
                                    "mnist", "synthetic"]
    with pytest.raises(ValueError, match=r"unknown data set 'minst'\. Did you mean 'mnist'\?"):
        load_dataset("minst")
    with pytest.raises(TypeError, match=r"'digits' does not take \['widths'\].*'image'"):
        load_dataset("digits", widths=3)
    d = load_dataset("digits", seed=5, image=True, n_train=30)
    spec = DataSpec.from_dict(json.loads(json.dumps(d.spec.to_dict())))
    assert spec == d.spec
    again = spec.load()
    assert torch.equal(again.train_x, d.train_x) and again.input_shape == (1, 8, 8)
    make_mnist(tmp_path / "m")
    m = load_dataset("fashion_mnist", data_dir=tmp_path / "m", n_train=3)
    assert m.name == "fashion-mnist" and m.spec.data_dir == str(tmp_path / "m")
    assert torch.equal(DataSpec.from_dict(m.spec.to_dict()).load().train_x, m.train_x)


def test_batches() -> None:
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    parts = list(batches(x, y, 4))
    assert [len(b) for b, _ in parts] == [4, 4, 2]
    assert torch.equal(torch.cat([b for b, _ in parts])[:, 0], x[:, 0])
    assert [len(b) for b, _ in batches(x, y, 4, drop_last=True)] == [4, 4]
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    s1 = torch.cat([b for _, b in batches(x, y, 3, shuffle=True, generator=g1)])
    s2 = torch.cat([b for _, b in batches(x, y, 3, shuffle=True, generator=g2)])
    assert torch.equal(s1, s2) and sorted(s1.tolist()) == list(range(10))
    assert not torch.equal(s1, y)
    for bx, by in batches(x, y, 3, shuffle=True):
        assert torch.equal(bx[:, 0].long(), by)  # pairs stay together
    with pytest.raises(ValueError, match="differ in length"):
        list(batches(x, y[:5], 2))
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(x, y, 0))


def test_a_cifar_batch_pickled_by_python3_with_protocol_2_loads(tmp_path: Path) -> None:
    """numpy stores an array's bytes through _codecs.encode(text, "latin1") in protocol 2:
    such a re-saved batch was refused as running code. Other encodings still are."""
    import codecs

    make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    data = np.arange(4 * 3072, dtype=np.int64).reshape(4, 3072) % 256
    with open(batch, "wb") as fh:
        pickle.dump({b"labels": [3, 1, 4, 1], b"data": data.astype(np.uint8)}, fh, protocol=2)
    assert b"_codecs" in batch.read_bytes()
    d = load_dataset("cifar10", data_dir=tmp_path)
    assert d.test_y.tolist() == [3, 1, 4, 1]
    assert torch.equal(d.test_x.reshape(4, -1), torch.tensor(data / 255.0, dtype=torch.float32))

    class Rot13:
        def __reduce__(self):
            return (codecs.encode, ("abc", "rot13"))

    with open(batch, "wb") as fh:
        pickle.dump({b"labels": [0], b"data": Rot13()}, fh, protocol=2)
    with pytest.raises(DataError, match="never allowed to run code"):
        load_dataset("cifar10", data_dir=tmp_path)
