"""ImageNet initialisation of backbones from state dicts in torchvision's key layout.

A source is a local file (``.pth``/``.pt``, a plain state dict or a dict with ``state_dict``) or
``True`` for torchvision's published file, downloaded once into the torch hub cache and checked
against the hash in its name. Nothing is downloaded unless asked for.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from squeezedet.errors import SqueezeDetError
from squeezedet.models.detector import SqueezeDet

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


def load_backbone_weights(model: SqueezeDet, source: str | Path | bool) -> list[str]:
    """Copy ImageNet weights into ``model.backbone``.

    Every backbone tensor of the source layout must be present with the right shape; keys that
    belong to neither the backbone nor a known classifier head are an error (it is probably the
    wrong file). Backbone parameters the source cannot have (SqueezeDet's new fire10/11) keep their
    initialisation. Returns the names of the loaded backbone tensors.
    """
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
