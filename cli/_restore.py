"""A checkpoint's model (weights loaded), data set, loss and probe settings, for the
commands that work on a trained model (``probe --checkpoint``, ``landscape``), and the
refusal of a custom model that a file names."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli._build import check_model_name, data_on, load_data, make_loss, sequence_args
from cli._errors import CLIError
from cli._options import ProbePlan
from cli._output import jsonable


@dataclass
class Restored:
    """A checkpoint's model (weights loaded), data set, loss and probe settings."""

    path: Path
    ckpt: dict[str, Any]
    model: Any
    ds: Any
    loss_name: str
    loss_fn: Any
    config: dict[str, Any]
    probe: ProbePlan | None
    model_desc: str


def restore(path: str | os.PathLike, *, model_name: str | None = None,
            model_args: dict | None = None, data_name: str | None = None,
            data_args: dict | None = None, data_dir: str | None = None,
            loss_name: str | None = None, device: Any = "cpu") -> Restored:
    """Rebuild the model and data of a checkpoint and load its weights.

    The ``*_name``/``*_args``/``data_dir`` arguments, when given, replace the
    checkpoint's model and data specs (for checkpoints written without them).
    The checkpoint is read onto the CPU (whatever device wrote it: its RNG states
    must stay there), then the model with its weights and the data go to ``device``
    (``--device``), where an optimizer rebuilt on the model loads its state.
    """
    import torch

    from spectra.runs.checkpoints import load_checkpoint

    ckpt = load_checkpoint(path, map_location="cpu")
    config = ckpt.get("config") or {}
    ds = _restore_data(path, ckpt.get("data_spec"), data_name, data_args, data_dir)
    spec = _restore_model_spec(path, ckpt.get("model_spec"), ds, model_name, model_args)
    model = build_trusted(spec, path)
    desc = spec.name + (f" {json.dumps(spec.kwargs)}" if spec.kwargs else "")
    try:
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        detail = " ".join(str(exc).split())
        raise CLIError(
            f"the weights in {path} do not fit model {desc} (a checkpoint of another "
            f"architecture?): {detail[:300] or first}"
        ) from exc
    device = torch.device(device)
    model.to(device)
    ds = data_on(ds, device)
    lname, loss_fn = make_loss(loss_name or config.get("loss") or "auto", ds.task)
    return Restored(path=Path(path), ckpt=ckpt, model=model, ds=ds, loss_name=lname,
                    loss_fn=loss_fn, config=config,
                    probe=ProbePlan.from_config(config.get("probe")), model_desc=desc)


def _restore_data(path, dspec: dict | None, data_name: str | None, data_args: dict | None,
                  data_dir: str | None):
    """The checkpoint's data set, or the one the options name instead."""
    from spectra.registries.data import DataSpec

    if dspec is None and data_name is None:
        raise CLIError(f"{path} records no data spec; pass --data (and --data-arg/--data-dir)")
    if dspec is not None and data_name is None:
        d = dict(dspec)
        if data_args:
            d["kwargs"] = {**dict(d.get("kwargs") or {}), **data_args}
        if data_dir is not None:
            d["data_dir"] = data_dir
        return DataSpec.from_dict(d).load()
    seed = int((dspec or {}).get("seed", 0))
    return load_data(data_name, data_dir, data_args or {}, seed)


def _restore_model_spec(path, ms: dict | None, ds, model_name: str | None,
                        model_args: dict | None):
    """The checkpoint's model spec, or the one the options make of it, checked
    against the inputs of data set ``ds``."""
    from spectra.registries.models import ModelSpec

    if ms is None and model_name is None:
        raise CLIError(f"{path} records no model spec; pass --model (and --model-arg)")
    if model_name is not None:
        check_model_name(model_name)
    if model_name is None and not model_args:
        spec = ModelSpec.from_dict(ms)
    else:
        base = dict(ms or {})
        kwargs = dict(base.get("kwargs") or {}) if model_name is None else {}
        kwargs.update(jsonable(sequence_args(model_name or base["name"], model_args or {})))
        # only a factory the user named may be imported, never one the file names
        spec = ModelSpec(name=model_name or base["name"], input_shape=ds.input_shape,
                         num_classes=ds.num_classes, kwargs=kwargs, seed=base.get("seed"),
                         allow_import=model_name is not None)
    if tuple(spec.input_shape) != tuple(ds.input_shape):
        raise CLIError(
            f"the model of {path} takes inputs of shape {tuple(spec.input_shape)}, but data set "
            f"{ds.name!r} has inputs of shape {tuple(ds.input_shape)}; probe it on the data it "
            "was trained on (or pass --data/--data-arg that give that shape)")
    return spec


def custom_model_error(path, name: str, option: str = "--model") -> CLIError:
    """The refusal of a custom model that a file (not the user) names."""
    return CLIError(
        f"{path} records the custom model {name!r}; loading a file never imports or calls code "
        f"it names. If you trust it, name it yourself: {option} {name}")


def build_trusted(spec, path, option: str = "--model"):
    """``spec.build()``, with the refusal of a file-named custom model as a CLI error."""
    from spectra.registries.models import UntrustedModelError

    try:
        return spec.build()
    except UntrustedModelError:
        raise custom_model_error(path, spec.name, option) from None
