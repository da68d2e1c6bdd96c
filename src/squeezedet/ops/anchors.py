"""Anchors: a pure function of (grid, image size, shapes).

Order is (row, column, anchor shape), the same order in which the head's predictions are
flattened. Centres follow the original SqueezeDet by default (``centers="original"``): column ``j``
at ``(j + 1) * W / (gw + 1)`` and row ``i`` at ``(i + 1) * H / (gh + 1)`` — evenly spaced with the
borders excluded. ``centers="cell"`` puts them at the centres of the grid cells,
``(j + ½) * W / gw`` and ``(i + ½) * H / gh`` (the PyTorch port's convention).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: KITTI anchor shapes (w, h) in input pixels at 1248×384, from the original SqueezeDet config.
KITTI_ANCHOR_SHAPES: tuple[tuple[float, float], ...] = (
    (36, 37), (366, 174), (115, 59), (162, 87), (38, 90),
    (258, 173), (224, 108), (78, 170), (72, 43),
)
#: The input size the KITTI shapes were chosen for, (W, H).
KITTI_ANCHOR_INPUT_SIZE = (1248, 384)
#: Anchor-centre conventions: "original" (the original SqueezeDet's, borders excluded) and "cell"
#: (grid-cell centres).
ANCHOR_CENTERS = ("original", "cell")


def make_anchors(
    grid_size: tuple[int, int],
    image_size: tuple[int, int],
    shapes: Sequence[Sequence[float]],
    device: torch.device | str | None = None,
    centers: str = "original",
) -> Tensor:
    """Anchor boxes for every grid cell and shape.

    Args:
        grid_size: ``(gw, gh)`` columns and rows of the output grid.
        image_size: ``(W, H)`` network input size in pixels.
        shapes: ``K`` anchor ``(w, h)`` in input pixels.
        centers: ``"original"`` (``(j + 1)·W/(gw + 1)``) or ``"cell"`` (``(j + ½)·W/gw``).

    Returns:
        ``float32 [gh * gw * K, 4]`` xyxy boxes, ordered by row, then column, then shape.
    """
    gw, gh = grid_size
    width, height = image_size
    wh = torch.as_tensor(shapes, dtype=torch.float32, device=device).reshape(-1, 2)
    if centers == "original":
        cx = torch.arange(1, gw + 1, dtype=torch.float32, device=device) * width / (gw + 1)
        cy = torch.arange(1, gh + 1, dtype=torch.float32, device=device) * height / (gh + 1)
    elif centers == "cell":
        cx = (torch.arange(gw, dtype=torch.float32, device=device) + 0.5) * width / gw
        cy = (torch.arange(gh, dtype=torch.float32, device=device) + 0.5) * height / gh
    else:
        raise ValueError(f"anchor centers must be one of {ANCHOR_CENTERS}, got {centers!r}")
    k = wh.shape[0]
    cy_, cx_ = torch.meshgrid(cy, cx, indexing="ij")  # [gh, gw]
    centres = torch.stack((cx_, cy_), dim=-1)[:, :, None, :].expand(gh, gw, k, 2)
    half = (wh / 2)[None, None].expand(gh, gw, k, 2)
    boxes = torch.cat((centres - half, centres + half), dim=-1)
    return boxes.reshape(-1, 4)


def scale_anchor_shapes(
    shapes: Sequence[Sequence[float]], from_size: tuple[int, int], to_size: tuple[int, int]
) -> tuple[tuple[float, float], ...]:
    """Rescale anchor ``(w, h)`` chosen for input ``from_size (W, H)`` to input ``to_size``."""
    sx = to_size[0] / from_size[0]
    sy = to_size[1] / from_size[1]
    return tuple((float(w) * sx, float(h) * sy) for w, h in shapes)


def read_anchor_shapes(source: str) -> tuple[tuple[float, float], ...]:
    """Anchor shapes from a YAML file (``anchors: [[w, h], ...]`` or a bare list) or inline text.

    Raises :class:`~squeezedet.errors.SqueezeDetError` naming the source when it is not a list of
    positive (w, h) pairs.
    """
    from pathlib import Path

    import yaml

    from squeezedet.errors import SqueezeDetError

    path = Path(source)
    if not path.is_file() and path.suffix.lower() in (".yaml", ".yml", ".json", ".txt"):
        raise SqueezeDetError(f"{source}: anchor file not found (write one with `squeezedet "
                              "anchors`, or give the shapes inline: '[[w,h],...]')")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig") if path.is_file() else source)
    except yaml.YAMLError as exc:
        raise SqueezeDetError(f"{source}: not valid YAML ({exc})".replace("\n", " ")) from None
    if isinstance(data, dict):
        data = data.get("anchors")
    try:
        shapes = tuple((float(w), float(h)) for w, h in data)
    except (TypeError, ValueError):
        shapes = ()
    if not shapes or any(not (0 < w < float("inf") and 0 < h < float("inf")) for w, h in shapes):
        raise SqueezeDetError(
            f"{source}: expected anchor shapes as a list of positive [w, h] pairs, "
            "e.g. [[36, 37], [366, 174]]"
        )
    return shapes


def write_anchor_shapes(path: str, shapes: Sequence[Sequence[float]],
                        input_size: tuple[int, int] | None = None) -> None:
    """Write shapes as YAML that ``squeezedet train --anchors FILE`` reads."""
    from pathlib import Path

    import yaml

    data: dict[str, object] = {"anchors": [[round(float(w), 2), round(float(h), 2)] for w, h in shapes]}
    if input_size is not None:
        data["input_size"] = list(input_size)
    Path(path).write_text(yaml.safe_dump(data, default_flow_style=None))
