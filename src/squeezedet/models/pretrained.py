"""ImageNet initialisation of backbones from state dicts in torchvision's key layout, or from the
original SqueezeDet's Caffe-converted pickles.

A source is a local file (``.pth``/``.pt``, a plain state dict or a dict with ``state_dict``),
``True`` for torchvision's published file, downloaded once into the torch hub cache and checked
against the hash in its name, or — for the SqueezeNet models — a ``.pkl`` the original SqueezeDet
trained from (``squeezenet_v1.1.pkl``, ``squeezenet_v1.0_SR_0.750.pkl``, ``sqz_full.pkl``; see
:func:`read_caffe_pickle`). Nothing is downloaded unless asked for.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from squeezedet.errors import SqueezeDetError
from squeezedet.models.detector import SqueezeDet
from squeezedet.models.layers import Fire

#: torchvision's published ImageNet weights; the 8 hex digits in each name start its SHA-256.
PRETRAINED_URLS: dict[str, str] = {
    "squeezedet": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    "vgg16_convdet": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "resnet50_convdet": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}

# Keys of the source that are expected and deliberately not used (classifier heads).
_IGNORED_PREFIXES = ("classifier.", "fc.", "layer4.")


def read_state_dict(source: str | Path) -> dict[str, Tensor]:
    """Load a state dict from a file, with a clear error when it is missing or not one."""
    path = Path(source)
    if not path.is_file():
        raise SqueezeDetError(f"{path}: pretrained weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise SqueezeDetError(f"{path}: not a readable PyTorch weights file ({exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SqueezeDetError(f"{path}: expected a state dict (name → tensor)")
    return obj


def download_state_dict(model_name: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for ``model_name`` (needs internet the first time)."""
    url = PRETRAINED_URLS.get(model_name)
    if url is None:
        raise SqueezeDetError(
            f"no published ImageNet weights fit {model_name!r}; pass a local file with "
            "pretrained=PATH"
        )
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True,
                                                  progress=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise SqueezeDetError(
            f"could not download {url} ({exc}); download it by hand and pass its path"
        ) from None


class _ArrayWrapper:
    """Stands in for joblib's ``NumpyArrayWrapper`` (an array whose bytes follow it in the stream)."""

    dtype: Any
    shape: Any

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _FileArrayWrapper:
    """Stands in for old joblib's ``NDArrayWrapper`` (an array in a ``.npy`` file beside the pickle)."""

    filename: Any

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _numpy_global(name: str) -> Any:
    import importlib

    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {name}")


#: the pure-Python unpickler (its BUILD step can be extended; the C one's cannot)
_PyUnpickler: Any = getattr(pickle, "_Unpickler")  # noqa: B009


class _CaffePickleReader(_PyUnpickler):
    """Unpickles dicts of NumPy arrays written by Python 2 (``pickle`` or ``joblib.dump``), and
    nothing else: only NumPy's array and dtype constructors, ``OrderedDict`` and joblib's array
    wrappers are resolved (stand-ins for the latter; the arrays are read here, without joblib)."""

    def __init__(self, file: Any, folder: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.folder = folder
        self.dispatch = dict(_PyUnpickler.dispatch)
        self.dispatch[pickle.BUILD[0]] = _CaffePickleReader._build

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
                "_reconstruct", "scalar"):
            return _numpy_global(name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            import numpy as np

            return getattr(np, name)
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "_codecs" and name == "encode":  # how Python 3 pickles bytes at protocol 2
            import codecs

            return codecs.encode
        if name == "NumpyArrayWrapper" and module.endswith("numpy_pickle"):
            return _ArrayWrapper
        if name == "NDArrayWrapper" and "numpy_pickle" in module:
            return _FileArrayWrapper
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not NumPy data)")

    def _build(self) -> None:
        _PyUnpickler.dispatch[pickle.BUILD[0]](self)
        top = self.stack[-1]
        if isinstance(top, _ArrayWrapper):
            self.stack[-1] = self._inline_array(top)
        elif isinstance(top, _FileArrayWrapper):
            import numpy as np

            self.stack[-1] = np.load(self.folder / Path(str(top.filename)).name,
                                     allow_pickle=False)

    def _inline_array(self, w: _ArrayWrapper) -> Any:
        """joblib ≥ 0.10 writes an array's bytes right after its wrapper; since 0.14 they are
        preceded by one byte giving a padding length and that many padding bytes."""
        import numpy as np

        dtype = np.dtype(w.dtype)
        if dtype.hasobject:
            raise pickle.UnpicklingError("object arrays are not weights")
        if getattr(w, "numpy_array_alignment_bytes", None) is not None:
            pad = self.read(1)
            if pad and pad[0]:
                self.read(pad[0])
        shape = tuple(int(v) for v in w.shape)
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise pickle.UnpicklingError("truncated array data")
        arr = np.frombuffer(raw, dtype=dtype, count=count).copy()
        if getattr(w, "order", "C") == "F":
            return arr.reshape(shape[::-1]).transpose()
        return arr.reshape(shape)


def read_caffe_pickle(path: str | Path) -> dict[str, list[Any]]:
    """The original SqueezeDet's ImageNet weights: a Python 2 pickle (``joblib.dump`` of Caffe's
    blobs, as its ``caffemodel2pkl.py`` writes them) of ``{layer name: [kernel [out, in, H, W],
    bias]}``, layers without parameters holding ``[]``. Read with ``encoding="latin1"`` (Python 2
    strings), without joblib; only NumPy data is unpickled."""
    p = Path(path)
    if not p.is_file():
        raise SqueezeDetError(f"{p}: pretrained weights file not found")
    try:
        with p.open("rb") as f:
            obj = _CaffePickleReader(f, p.parent).load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise SqueezeDetError(f"{p}: not a readable weights pickle ({exc})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, (list, tuple)) for v in obj.values()):
        raise SqueezeDetError(f"{p}: expected a dict of layer name -> [kernel, bias] (the "
                              "original SqueezeDet's ImageNet pickle)")
    return {str(k): list(v) for k, v in obj.items()}


def squeezenet_layers(model: SqueezeDet) -> list[tuple[str, str]]:
    """``(module path in our model, layer name in the original)`` for every convolution of a
    SqueezeNet detector: ``conv1``, ``fire2/squeeze1x1`` … ``fire11/expand3x3``, ``conv12``."""
    features = cast(nn.Sequential, model.backbone.get_submodule("features"))
    extra = cast(nn.Sequential, model.backbone.get_submodule("extra"))
    out = [("backbone.features.0", "conv1")]
    fires = [f"backbone.features.{i}" for i, m in enumerate(features) if isinstance(m, Fire)]
    fires += [f"backbone.extra.{i}" for i in range(len(extra))]
    for n, path in enumerate(fires, start=2):
        for ours, theirs in (("squeeze", "squeeze1x1"), ("expand1x1", "expand1x1"),
                             ("expand3x3", "expand3x3")):
            out.append((f"{path}.{ours}", f"fire{n}/{theirs}"))
    out.append(("convdet", "conv12"))
    return out


def caffe_pickle_state(model: SqueezeDet, path: str | Path) -> dict[str, Tensor]:
    """Backbone state (keys relative to ``model.backbone``) from the original's ImageNet pickle:
    ``conv1`` and ``fire2`` … ``fire9`` (Caffe's kernel layout is PyTorch's); the classifier
    (``conv10``) and parameter-less layers are skipped. Missing, unknown and mis-shaped layers are
    reported together."""
    import numpy as np

    if model.name not in ("squeezedet", "squeezedet_plus"):
        raise SqueezeDetError(f"{path}: the original's ImageNet pickles are SqueezeNets; "
                              f"{model.name} takes a torchvision state dict")
    layers = read_caffe_pickle(path)
    target = model.backbone.state_dict()
    wanted = {theirs: ours.removeprefix("backbone.") for ours, theirs in squeezenet_layers(model)
              if ours.startswith("backbone.features.")}
    state: dict[str, Tensor] = {}
    missing, shaped = [], []
    for theirs, ours in wanted.items():
        blobs = layers.get(theirs)
        if not blobs or len(blobs) != 2:
            missing.append(theirs)
            continue
        for blob, suffix in zip(blobs, ("weight", "bias"), strict=True):
            value = np.asarray(blob, dtype=np.float32)
            key = f"{ours}.{suffix}"
            if tuple(value.shape) != tuple(target[key].shape):
                shaped.append(f"{theirs} {suffix} {list(value.shape)} (expected "
                              f"{list(target[key].shape)})")
            else:
                state[key] = torch.from_numpy(value.copy())
    unknown = sorted(k for k, v in layers.items() if v and k not in wanted and k != "conv10")
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if shaped:
        problems.append("wrong shape: " + "; ".join(shaped[:4]))
    if unknown:
        problems.append("unknown " + ", ".join(unknown[:8]))
    if problems:
        raise SqueezeDetError(f"{path}: does not fit {model.name}'s backbone: "
                              + "; ".join(problems))
    return state


def load_backbone_weights(model: SqueezeDet, source: str | Path | bool) -> list[str]:
    """Copy ImageNet weights into ``model.backbone``.

    Every backbone tensor of the source layout must be present with the right shape; keys that
    belong to neither the backbone nor a known classifier head are an error (it is probably the
    wrong file). Backbone parameters the source cannot have (SqueezeDet's new fire10/11) keep their
    initialisation. Returns the names of the loaded backbone tensors.
    """
    if source is not True and str(source).lower().endswith(".pkl"):
        loaded_pkl = caffe_pickle_state(model, source)  # type: ignore[arg-type]
        if model.normalization != "caffe":
            warnings.warn(f"{source}: the original's ImageNet weights expect BGR mean-subtracted "
                          f"input (normalization=caffe), this model has "
                          f"normalization={model.normalization}", stacklevel=2)
        model.backbone.load_state_dict(loaded_pkl, strict=False)
        return sorted(loaded_pkl)
    state = download_state_dict(model.name) if source is True else read_state_dict(source)  # type: ignore[arg-type]
    where = "torchvision download" if source is True else str(source)
    target = model.backbone.state_dict()
    own = {k for k in target if not k.startswith("extra.")}
    loaded: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key in own:
            if tuple(value.shape) != tuple(target[key].shape):
                raise SqueezeDetError(
                    f"{where}: {key} has shape {tuple(value.shape)} but {model.name} needs "
                    f"{tuple(target[key].shape)}; these weights are for another architecture"
                )
            loaded[key] = value
        elif not key.startswith(_IGNORED_PREFIXES) and not key.endswith("num_batches_tracked"):
            unknown.append(key)
    missing = sorted(own - loaded.keys())
    if unknown:
        raise SqueezeDetError(
            f"{where}: {len(unknown)} unexpected keys for {model.name} (first: {unknown[0]!r}); "
            "expected torchvision's key layout, e.g. 'features.3.squeeze.weight'"
        )
    if missing:
        raise SqueezeDetError(
            f"{where}: {len(missing)} backbone tensors missing (first: {missing[0]!r}); "
            "expected torchvision's key layout, e.g. 'features.3.squeeze.weight'"
        )
    model.backbone.load_state_dict(loaded, strict=False)
    return sorted(loaded)
