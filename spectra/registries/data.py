"""Data registry: small data sets as tensors, read from local files only.

Built-in names (``available_datasets()``):

``digits`` (default)
    scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes).
    Pixels (0..16) are divided by 16, so inputs lie in [0, 1]. Split by a
    class-stratified permutation seeded with ``seed`` (``test_fraction`` 0.2 of
    each class: 1438 train / 359 test). ``image=False`` gives (64,) features, ``image=True``
    (1, 8, 8) images.
``mnist``, ``fashion-mnist``
    The IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``)
    in ``data_dir``, ``data_dir/<name>``, or torchvision's
    ``data_dir/MNIST/raw`` / ``data_dir/FashionMNIST/raw``. Pixels / 255;
    ``image=True`` (default) gives (1, 28, 28), else (784,).
``cifar10``
    The python pickles ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``
    of ``cifar-10-batches-py`` (in ``data_dir``, or ``data_dir`` itself).
    Pixels / 255; (3, 32, 32) images, or (3072,) with ``image=False``.
``cifar100``
    ``cifar-100-python/train`` and ``test``; ``label="fine"`` (100 classes,
    default) or ``"coarse"`` (20).
``synthetic``
    Seeded Gaussian data: ``task="classification"`` draws class means from
    N(0, ``separation``^2 I) and inputs around them with unit variance;
    ``task="regression"`` draws x ~ N(0, I) and y = x W / sqrt(d) + ``noise`` * eps
    (a linear teacher, so the MSE Hessian is known in closed form).

Common options of the real data sets: ``n_train`` / ``n_test`` keep a seeded
random subset; ``standardize=True`` subtracts the training mean and divides by
the training standard deviation (per channel for images, per feature
otherwise) instead of scaling to [0, 1].

``data_dir`` defaults to ``$SPECTRA_DATA_DIR``, else ``./data``. Nothing is
downloaded: a missing file raises :class:`DataError` naming what was looked
for and where.
"""

from __future__ import annotations

import gzip
import inspect
import json
import os
import pickle
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectra.utils.checks import did_you_mean, options

__all__ = [
    "DataError",
    "DataSpec",
    "Dataset",
    "available_datasets",
    "batches",
    "load_dataset",
    "read_idx",
]


class DataError(ValueError):
    """A data set that cannot be read: missing or malformed files, bad options.

    Missing files raise :class:`DataFileNotFoundError`, which is also a
    ``FileNotFoundError``.
    """


class DataFileNotFoundError(DataError, FileNotFoundError):
    """The files of a data set are not where they were looked for."""


@dataclass(frozen=True)
class DataSpec:
    """JSON-able recipe of a data set: ``DataSpec.from_dict(d).load()`` rebuilds it."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def load(self) -> Dataset:
        return load_dataset(self.name, data_dir=self.data_dir, seed=self.seed, **self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs), "seed": self.seed,
                "data_dir": self.data_dir}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataSpec:
        if "name" not in data:
            raise ValueError(f"a data spec needs a 'name'; got keys {sorted(data)}")
        return cls(name=data["name"], kwargs=dict(data.get("kwargs") or {}),
                   seed=int(data.get("seed", 0)), data_dir=data.get("data_dir"))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split held in memory.

    Attributes:
        name: registry name.
        train_x, test_x: ``(N, *input_shape)`` float32 tensors.
        train_y, test_y: ``(N,)`` int64 class labels (classification), or
            ``(N, num_classes)`` float32 targets (regression).
        num_classes: number of classes, or of regression targets (model outputs).
        input_shape: shape of one example, e.g. ``(64,)`` or ``(1, 28, 28)``.
        task: ``"classification"`` or ``"regression"``.
        spec: the :class:`DataSpec` that rebuilds it.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    task: str
    spec: DataSpec

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.train_x.shape)}, "
            f"test={tuple(self.test_x.shape)}, num_classes={self.num_classes}, task={self.task!r})"
        )


# --------------------------------------------------------------------------- helpers


def _subset(n_total: int, n: int | None, rng: np.random.Generator, what: str) -> np.ndarray:
    if n is None:
        return np.arange(n_total)
    if not 1 <= int(n) <= n_total:
        raise DataError(f"{what} must be between 1 and {n_total}, got {n}")
    return np.sort(rng.permutation(n_total)[: int(n)])


def _finish(
    name: str,
    spec: DataSpec,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    num_classes: int,
    image_shape: tuple[int, ...],
    image: bool,
    scale: float,
    n_train: int | None,
    n_test: int | None,
    standardize: bool,
    rng: np.random.Generator,
) -> Dataset:
    """Subsample, scale to [0, 1] or standardize, shape, and wrap as tensors."""
    (xtr, ytr), (xte, yte) = train, test
    itr = _subset(len(xtr), n_train, rng, "n_train")
    ite = _subset(len(xte), n_test, rng, "n_test")
    shape = image_shape if image else (int(np.prod(image_shape)),)
    xtr = xtr[itr].reshape((len(itr),) + shape).astype(np.float32) / np.float32(scale)
    xte = xte[ite].reshape((len(ite),) + shape).astype(np.float32) / np.float32(scale)
    ytr, yte = ytr[itr], yte[ite]
    if standardize:  # per channel for images, per feature for flat inputs
        axes = (0, 2, 3) if len(shape) == 3 else (0,)
        mean = xtr.mean(axis=axes, keepdims=True)
        std = xtr.std(axis=axes, keepdims=True)
        std[std < 1e-6] = 1.0  # constant pixels stay centred, not divided by zero
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    return Dataset(
        name=name,
        train_x=torch.from_numpy(np.ascontiguousarray(xtr)),
        train_y=torch.from_numpy(ytr.astype(np.int64)),
        test_x=torch.from_numpy(np.ascontiguousarray(xte)),
        test_y=torch.from_numpy(yte.astype(np.int64)),
        num_classes=num_classes,
        input_shape=shape,
        task="classification",
        spec=spec,
    )


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{path}: labels must lie in 0..{num_classes - 1}, found "
            f"{int(labels.min())}..{int(labels.max())}"
        )


def _data_root(data_dir: str | os.PathLike[str] | None) -> Path:
    return Path(data_dir if data_dir is not None else os.environ.get("SPECTRA_DATA_DIR", "data"))


# --------------------------------------------------------------------------- digits


def _stratified_split(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = round(test_fraction * len(idx))
        if not 0 < k < len(idx):  # an empty side: no training, or NaN test metrics
            raise DataError(f"test_fraction={test_fraction} leaves {'no test' if k == 0 else 'no training'} "
                            f"sample of class {int(c)} ({len(idx)} samples); choose a fraction "
                            f"between {1 / len(idx):.3g} and {1 - 1 / len(idx):.3g}")
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _digits(
    name: str,
    spec: DataSpec,
    *,
    data_dir: Path,
    seed: int,
    image: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    test_fraction: float = 0.2,
    standardize: bool = False,
) -> Dataset:
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = load_digits()
    x, y = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    itr, ite = _stratified_split(y, test_fraction, rng)
    return _finish(
        "digits", spec, (x[itr], y[itr]), (x[ite], y[ite]), num_classes=10,
        image_shape=(1, 8, 8), image=image, scale=16.0, n_train=n_train, n_test=n_test,
        standardize=standardize, rng=rng,
    )


# --------------------------------------------------------------------------- IDX (MNIST)

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed when the name ends in ``.gz``).

    Format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, the
    dimensions as big-endian uint32, then the data in C order, big-endian.

    Raises:
        DataError: a file that cannot be read or decompressed (a corrupt ``.gz``), a
            malformed header, or a size that does not match the header.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        # OSError includes gzip.BadGzipFile (a bad gzip header); a corrupt deflate
        # stream behind a good header is a zlib.error, which is not an OSError
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}; expected "
            "00 00, a type code in 08 09 0b 0c 0d 0e, and the number of dimensions)"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - head != expected:
        raise DataError(
            f"{path}: IDX header says {dims} of {dtype} ({expected} bytes of data), "
            f"the file holds {len(raw) - head}"
        )
    return np.frombuffer(raw, dtype, offset=head).reshape(dims).astype(dtype.newbyteorder("="))


_MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_DIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _find_idx_files(name: str, root: Path) -> dict[str, Path]:
    # the folders named for the data set first: MNIST and Fashion-MNIST files share their
    # names, so MNIST's files in data_dir itself must not stand in for Fashion-MNIST's
    # when those are in their own folder (data_dir itself, the flat layout, can hold
    # either: the files cannot tell which)
    candidates = list(dict.fromkeys([
        root / name, root / name.replace("-", "_"), root / _TORCHVISION_DIRS[name] / "raw", root,
    ]))
    for directory in candidates:
        found = {}
        for key, base in _MNIST_FILES.items():
            for fname in (base, base + ".gz"):
                if (directory / fname).is_file():
                    found[key] = directory / fname
                    break
        if len(found) == len(_MNIST_FILES):
            return found
        if found and directory != root:  # the data set's own folder, incomplete: the
            # next candidate (data_dir itself) may hold the other data set's files
            missing = [base for key, base in _MNIST_FILES.items() if key not in found]
            raise DataFileNotFoundError(
                f"{name}: {directory} holds {len(found)} of its 4 IDX files; missing "
                f"{', '.join(missing)} (raw or .gz). Put them there: data_dir itself is not "
                "searched while the folder named for the data set is incomplete")
    raise DataFileNotFoundError(
        f"{name}: expected the IDX files {', '.join(_MNIST_FILES.values())} (each raw or "
        f".gz) in one of: {', '.join(str(d) for d in candidates)}. Nothing is downloaded; "
        "put the files there or pass data_dir="
    )


def _mnist_like(
    name: str,
    spec: DataSpec,
    *,
    data_dir: Path,
    seed: int,
    image: bool = True,
    n_train: int | None = None,
    n_test: int | None = None,
    standardize: bool = False,
) -> Dataset:
    files = _find_idx_files(name, data_dir)
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        px, py = files[f"{split}_x"], files[f"{split}_y"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(f"{px}: expected (N, rows, cols) uint8 images, got {x.shape} {x.dtype}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{py}: expected {len(x)} labels (one per image of {px.name}), got shape {y.shape}"
            )
        if y.dtype != np.uint8:  # a float label file would be truncated to classes
            raise DataError(f"{py}: expected uint8 labels (IDX type 08), got {y.dtype}")
        _check_labels(py, y, 10)
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        raise DataError(f"{name}: train and test images differ in size")
    _, h, w = arrays["train_x"].shape
    return _finish(
        name, spec, (arrays["train_x"], arrays["train_y"]), (arrays["test_x"], arrays["test_y"]),
        num_classes=10, image_shape=(1, h, w), image=image, scale=255.0, n_train=n_train,
        n_test=n_test, standardize=standardize, rng=np.random.default_rng(seed),
    )


# --------------------------------------------------------------------------- CIFAR


# What a CIFAR python batch holds: dicts, lists, bytes/str and numpy arrays. A
# pickle can name any callable; only numpy's array reconstruction is allowed.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """What ``_codecs.encode`` does in a protocol-2 pickle of numpy arrays written by
    Python 3 (an array's bytes stored as latin-1 text), and nothing else."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"it calls _codecs.encode with {encoding!r}, and a CIFAR batch only stores bytes "
            "as latin-1 text (data files are never allowed to run code)")
    return text.encode("latin-1")


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global but numpy's array reconstruction, so a
    data file can never import or call code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"it names {module}.{name}, and a CIFAR batch holds only dicts, lists and numpy "
            "arrays (data files are never allowed to run code)")


def _unpickle(path: Path, keys: Sequence[bytes]) -> dict[bytes, Any]:
    """Load one CIFAR python batch with :class:`_ArrayUnpickler` (no code runs)."""
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a CIFAR python pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    missing = [k for k in keys if k not in batch]
    if missing:
        raise DataError(f"{path}: missing keys {missing}; found {sorted(batch)[:10]}")
    return batch


def _cifar_arrays(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path, (b"data", label_key))
    x = np.asarray(batch[b"data"])
    raw = np.asarray(batch[label_key])
    if raw.dtype.kind not in "iu":  # float labels would be truncated to classes
        raise DataError(f"{path}: {label_key!r} must hold integer labels, got {raw.dtype} values")
    y = raw.astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' must be (N, 3072) uint8, got {x.shape} {x.dtype}")
    if y.shape != (len(x),):
        raise DataError(f"{path}: {label_key!r} must hold {len(x)} labels, got shape {y.shape}")
    _check_labels(path, y, num_classes)
    return x, y


def _find_dir(root: Path, sub: str, files: Sequence[str], name: str) -> Path:
    candidates = [root / sub, root]
    for directory in candidates:
        if all((directory / f).is_file() for f in files):
            return directory
    raise DataFileNotFoundError(
        f"{name}: expected the python-version files {', '.join(files)} in one of: "
        f"{', '.join(str(d) for d in candidates)}. Nothing is downloaded; extract "
        f"the archive there (it creates {sub}/) or pass data_dir="
    )


def _cifar(
    name: str,
    spec: DataSpec,
    *,
    data_dir: Path,
    seed: int,
    image: bool = True,
    n_train: int | None = None,
    n_test: int | None = None,
    standardize: bool = False,
    label: str = "fine",
) -> Dataset:
    if name == "cifar10":
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        directory = _find_dir(data_dir, "cifar-10-batches-py", train_files + ["test_batch"], name)
        parts = [_cifar_arrays(directory / f, b"labels", 10) for f in train_files]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _cifar_arrays(directory / "test_batch", b"labels", 10)
        num_classes = 10
    else:
        if label not in ("fine", "coarse"):
            raise DataError(f"cifar100: label must be 'fine' or 'coarse', got {label!r}")
        num_classes = 100 if label == "fine" else 20
        key = b"fine_labels" if label == "fine" else b"coarse_labels"
        directory = _find_dir(data_dir, "cifar-100-python", ["train", "test"], name)
        train = _cifar_arrays(directory / "train", key, num_classes)
        test = _cifar_arrays(directory / "test", key, num_classes)
    return _finish(
        name, spec, train, test, num_classes=num_classes, image_shape=(3, 32, 32), image=image,
        scale=255.0, n_train=n_train, n_test=n_test, standardize=standardize,
        rng=np.random.default_rng(seed),
    )


# --------------------------------------------------------------------------- synthetic


def _synthetic(
    name: str,
    spec: DataSpec,
    *,
    data_dir: Path,
    seed: int,
    task: str = "classification",
    n_train: int = 512,
    n_test: int = 256,
    dim: int = 20,
    num_classes: int | None = None,
    num_targets: int | None = None,
    separation: float | None = None,
    noise: float | None = None,
) -> Dataset:
    if task not in ("classification", "regression"):
        raise DataError(f"synthetic: task must be 'classification' or 'regression', got {task!r}")
    # each task's own options (defaults: 3 classes at separation 2; 1 target, noise 0.1);
    # the other task's would be ignored without a word
    given = {"num_classes": num_classes, "separation": separation} if task == "regression" \
        else {"num_targets": num_targets, "noise": noise}
    foreign = sorted(k for k, v in given.items() if v is not None)
    if foreign:
        other = "classification" if task == "regression" else "regression"
        raise DataError(f"synthetic: {', '.join(foreign)} {'is an option' if len(foreign) == 1 else 'are options'} "
                        f"of task={other!r}, not of task={task!r}")
    num_classes = 3 if num_classes is None else num_classes
    num_targets = 1 if num_targets is None else num_targets
    separation = 2.0 if separation is None else separation
    noise = 0.1 if noise is None else noise
    if min(n_train, n_test, dim) < 1:
        raise DataError(f"synthetic: n_train, n_test and dim must be >= 1, got {n_train}, {n_test}, {dim}")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    if task == "classification":
        if num_classes < 2:
            raise DataError(f"synthetic: num_classes must be >= 2, got {num_classes}")
        means = separation * rng.standard_normal((num_classes, dim))
        y = rng.integers(0, num_classes, n)
        x = means[y] + rng.standard_normal((n, dim))
        targets, outputs = y.astype(np.int64), num_classes
    else:
        if num_targets < 1:
            raise DataError(f"synthetic: num_targets must be >= 1, got {num_targets}")
        x = rng.standard_normal((n, dim))
        w = rng.standard_normal((dim, num_targets))
        targets = (x @ w / np.sqrt(dim) + noise * rng.standard_normal((n, num_targets))).astype(np.float32)
        outputs = num_targets
    x = x.astype(np.float32)
    return Dataset(
        name="synthetic",
        train_x=torch.from_numpy(x[:n_train].copy()),
        train_y=torch.from_numpy(targets[:n_train].copy()),
        test_x=torch.from_numpy(x[n_train:].copy()),
        test_y=torch.from_numpy(targets[n_train:].copy()),
        num_classes=outputs,
        input_shape=(dim,),
        task=task,
        spec=spec,
    )


# --------------------------------------------------------------------------- registry

# name -> loader(name, spec, *, data_dir, seed, **options); options are its other
# keyword-only parameters.
_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _digits,
    "mnist": _mnist_like,
    "fashion-mnist": _mnist_like,
    "cifar10": _cifar,
    "cifar100": _cifar,
    "synthetic": _synthetic,
}


def _options(key: str) -> list[str]:
    params = inspect.signature(_LOADERS[key]).parameters.items()
    options = [p for p, v in params if v.kind is inspect.Parameter.KEYWORD_ONLY]
    options = [p for p in options if p not in ("seed", "data_dir")]
    if key == "cifar10":
        options.remove("label")
    return options


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_LOADERS)


def load_dataset(
    name: str = "digits",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> Dataset:
    """Load a data set by name (see the module docstring for names and options).

    Args:
        name: one of :func:`available_datasets`; ``"digits"`` by default.
        data_dir: where ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``
            look for their files; default ``$SPECTRA_DATA_DIR`` or ``./data``.
        seed: seeds the split (digits), subsets and synthetic draws; the same
            name, options and seed give the same tensors.
        **kwargs: options of that data set (``image``, ``n_train``, ``n_test``,
            ``standardize``, ...).

    Raises:
        ValueError: unknown name (the message lists the names and suggests the
            closest).
        DataFileNotFoundError: the files are missing (message lists them and
            the directories searched).
        DataError: malformed files or bad options.
        TypeError: an option the data set does not take.
    """
    key = name.lower().replace("_", "-")
    if key not in _LOADERS:
        hint = did_you_mean(key, _LOADERS, cutoff=0.6)
        raise ValueError(f"unknown data set {name!r}.{hint} Available: {', '.join(available_datasets())}")
    accepted = _options(key)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"data set {key!r} does not take {unknown}; it accepts {accepted}")
    options(f"data set {key!r}", _LOADERS[key], kwargs)
    spec = DataSpec(
        name=key, kwargs=kwargs, seed=int(seed),
        data_dir=None if data_dir is None else os.fspath(data_dir),
    )
    try:
        json.dumps(spec.to_dict())
    except TypeError as exc:
        raise TypeError(f"data set options must be JSON-able: {exc}") from None
    return _LOADERS[key](key, spec, data_dir=_data_root(data_dir), seed=int(seed), **kwargs)


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x[i:i+b], y[i:i+b])`` mini-batches, in order or shuffled.

    Args:
        x, y: tensors with the same first dimension N.
        batch_size: examples per batch; the last one may be smaller unless
            ``drop_last``.
        shuffle: draw a permutation with ``torch.randperm(N, generator=generator)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y differ in length: {n} vs {y.shape[0]}")
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
