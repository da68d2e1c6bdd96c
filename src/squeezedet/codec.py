"""A compact file format for (pruned, weight-shared) state dicts: the ``.sqz`` checkpoint.

After Deep Compression (Han, Mao, Dally, ICLR 2016): each large weight tensor is stored as

- the **positions** of its non-zero entries: a bitmap, or the run lengths of zeros before each
  non-zero entry (one byte per run; the token 255 means "255 zeros and no entry", so long gaps
  cost extra tokens), whichever the entropy coder shrinks more (run lengths are tried only for
  sparse tensors, :data:`RUNS_DENSITY`);
- a **codebook** of at most ``2^bits`` float32 values, sorted ascending (k-means centroids or
  evenly spaced levels, :mod:`squeezedet.weight_sharing`);
- one **index** byte per non-zero entry into the codebook.

Biases and small tensors are stored as they are. All masks, all indices and all values are each
concatenated into one stream, and each stream is entropy coded with LZMA (or zlib, or not at all;
without an entropy coder the indices are bit-packed at ``bits`` bits). Decoding is exact: the
decoded tensor is ``codebook[index]`` at the stored positions and 0 elsewhere, bit for bit the
tensor :func:`~squeezedet.weight_sharing.quantize_tensor` returns; a tensor with no more than
``2^bits`` distinct non-zero values is stored losslessly.

File layout: ``MAGIC`` (8 bytes), the header length (4 bytes, little-endian), the header (UTF-8
JSON, coded like the streams, after one byte naming the coder: the checkpoint's ``meta`` and
``config``, the tensor table, the stream lengths), then the three coded streams. Only torch,
NumPy and the standard library are needed to read it.
"""

from __future__ import annotations

import fnmatch
import json
import lzma
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from squeezedet.errors import SqueezeDetError
from squeezedet.weight_sharing import dequantize, quantize_tensor

MAGIC = b"SQZDET\x00\x01"
SUFFIX = ".sqz"
QUANTIZERS = ("kmeans", "uniform")
ENTROPY_CODERS = ("lzma", "zlib", "none")
_STREAMS = ("masks", "indices", "values")
_FILL = 255  # run-length token: 255 zeros, no entry
_HEADER_TAG = {"lzma": b"L", "zlib": b"Z", "none": b"J"}  # first header byte: how it is coded
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6}]  # 9 and "extreme": same sizes here, slower
RUNS_DENSITY = 0.25  # positions="auto" tries run lengths below this share of non-zero entries


@dataclass(frozen=True)
class CodecSettings:
    """How :func:`encode_state_dict` stores tensors.

    Args:
        bits: index width, 1–8: at most ``2^bits`` distinct non-zero values per tensor.
        quantizer: ``"kmeans"`` (weight sharing) or ``"uniform"`` (evenly spaced levels).
        entropy: ``"lzma"``, ``"zlib"`` or ``"none"``.
        positions: ``"auto"`` (the bitmap, or with fewer than :data:`RUNS_DENSITY` non-zero
            entries whichever of the two is smaller after coding), ``"bitmap"`` or ``"runs"``.
        min_numel: floating-point tensors with at least two dimensions and at least this many
            elements are quantised; the rest (biases, small tensors) are stored exactly.
        kmeans_iters: Lloyd iterations at most.
        layer_bits: ``(pattern, bits)`` pairs: a tensor whose name matches ``pattern`` (a shell
            glob, :func:`fnmatch.fnmatchcase`) gets that index width instead of ``bits``; the
            first matching pair counts.
    """

    bits: int = 5
    quantizer: str = "kmeans"
    entropy: str = "lzma"
    positions: str = "auto"
    min_numel: int = 1024
    kmeans_iters: int = 30
    layer_bits: tuple[tuple[str, int], ...] = ()

    def bits_for(self, name: str) -> int:
        """The index width of the tensor ``name``."""
        return next((b for pattern, b in self.layer_bits if fnmatch.fnmatchcase(name, pattern)),
                    self.bits)

    @property
    def max_bits(self) -> int:
        """The widest index width any tensor can get."""
        return max([self.bits, *(b for _, b in self.layer_bits)])

    def __post_init__(self) -> None:
        for b in (self.bits, *(b for _, b in self.layer_bits)):
            if not 1 <= b <= 8:
                raise SqueezeDetError(f"bits must be between 1 and 8, got {b}")
        if self.quantizer not in QUANTIZERS:
            raise SqueezeDetError(f"unknown quantizer {self.quantizer!r}; choose from "
                                  f"{', '.join(QUANTIZERS)}")
        if self.entropy not in ENTROPY_CODERS:
            raise SqueezeDetError(f"unknown entropy coder {self.entropy!r}; choose from "
                                  f"{', '.join(ENTROPY_CODERS)}")
        if self.positions not in ("auto", "bitmap", "runs"):
            raise SqueezeDetError(f"positions must be auto, bitmap or runs, got {self.positions!r}")


def quantize_state_dict(state: dict[str, torch.Tensor],
                        settings: CodecSettings) -> dict[str, torch.Tensor]:
    """The state dict as :func:`decode` will return it after :func:`encode_state_dict`:
    quantised tensors dequantised, the rest unchanged."""
    out = {}
    for name, t in state.items():
        if _quantized(t, settings):
            mask, cb, idx = quantize_tensor(t, settings.bits_for(name), settings.quantizer,
                                            settings.kmeans_iters)
            out[name] = dequantize(mask, cb, idx, tuple(t.shape))
        else:
            out[name] = t.detach().cpu().clone()
    return out


def _quantized(t: torch.Tensor, settings: CodecSettings) -> bool:
    return t.is_floating_point() and t.dim() >= 2 and t.numel() >= settings.min_numel


# --- positions -------------------------------------------------------------------------------


def runs_encode(mask: np.ndarray) -> np.ndarray:
    """Run-length tokens (uint8) of a bool mask: for each True entry the number of False entries
    before it (since the previous True), with token 255 meaning "255 False entries, no entry"."""
    pos = np.flatnonzero(mask)
    if pos.size == 0:
        return np.zeros(0, np.uint8)
    gaps = np.diff(pos, prepend=-1) - 1
    fills, rest = np.divmod(gaps, _FILL)
    tokens = np.full(int(fills.sum()) + pos.size, _FILL, dtype=np.uint8)
    # each entry's own token sits after its fill tokens
    own = np.cumsum(fills + 1) - 1
    tokens[own] = rest.astype(np.uint8)
    return tokens


def runs_decode(tokens: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`runs_encode`: the bool mask of ``n`` entries."""
    mask = np.zeros(n, dtype=bool)
    if tokens.size == 0:
        return mask
    t = tokens.astype(np.int64)
    entry = t != _FILL
    advance = t + entry  # an entry's token moves past its zeros and itself
    pos = np.cumsum(advance)[entry] - 1
    if pos.size and pos[-1] >= n:
        raise SqueezeDetError("corrupt .sqz data: run lengths point past the end of a tensor")
    mask[pos] = True
    return mask


# --- streams ---------------------------------------------------------------------------------


def _compress(data: bytes, coder: str) -> bytes:
    if coder == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    if coder == "zlib":
        return zlib.compress(data, 9)
    return data


def _decompress(data: bytes, coder: str) -> bytes:
    if coder == "lzma":
        return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    if coder == "zlib":
        return zlib.decompress(data)
    return data


def _pack_bits(indices: np.ndarray, bits: int) -> bytes:
    """``bits`` low bits of each uint8, most significant first, packed without gaps."""
    b = np.unpackbits(indices.astype(np.uint8)[:, None], axis=1)[:, 8 - bits:]
    return np.packbits(b.ravel()).tobytes()


def _unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    b = np.unpackbits(np.frombuffer(data, np.uint8))[: count * bits].reshape(count, bits)
    return (b.astype(np.uint16) << np.arange(bits - 1, -1, -1, dtype=np.uint16)).sum(1).astype(np.uint8)


@dataclass(frozen=True)
class EncodedSize:
    """Bytes of a ``.sqz`` file and of its parts."""

    total: int
    header: int
    masks: int
    indices: int
    values: int
    positions: str

    def to_json(self) -> dict[str, object]:
        return {"total_bytes": self.total, "header_bytes": self.header, "masks_bytes": self.masks,
                "indices_bytes": self.indices, "values_bytes": self.values,
                "positions": self.positions}


def encode_state_dict(state: dict[str, torch.Tensor], settings: CodecSettings,
                      header: dict[str, Any] | None = None) -> tuple[bytes, EncodedSize]:
    """The ``.sqz`` bytes of ``state`` (see the module docstring) and their breakdown.

    ``header``: JSON-serialisable extras stored beside the tensors (``meta``, ``config``, …).
    """
    table: list[dict[str, Any]] = []
    masks: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    values: list[bytes] = []
    for name, t in state.items():
        shape = list(t.shape)
        if _quantized(t, settings):
            mask, cb, idx = quantize_tensor(t, settings.bits_for(name), settings.quantizer,
                                            settings.kmeans_iters)
            table.append({"name": name, "shape": shape, "kind": "shared", "nnz": int(idx.size),
                          "codebook": int(cb.size)})
            masks.append(mask)
            indices.append(idx)
            values.append(cb.astype("<f4").tobytes())
        else:
            arr = t.detach().cpu().contiguous()
            raw = _tensor_bytes(arr)
            table.append({"name": name, "shape": shape, "kind": "raw",
                          "dtype": str(arr.dtype).removeprefix("torch."), "bytes": len(raw)})
            values.append(raw)
    all_idx = np.concatenate(indices) if indices else np.zeros(0, np.uint8)
    idx_bytes = (_pack_bits(all_idx, settings.max_bits) if settings.entropy == "none"
                 else all_idx.tobytes())
    common = {"indices": _compress(idx_bytes, settings.entropy),
              "values": _compress(b"".join(values), settings.entropy)}
    modes: tuple[str, ...] = (settings.positions,)
    if settings.positions == "auto":
        # run lengths cost a token per entry: they can beat the bitmap only when entries are rare
        nnz, numel = sum(int(m.sum()) for m in masks), sum(m.size for m in masks)
        modes = ("bitmap", "runs") if nnz < RUNS_DENSITY * numel else ("bitmap",)
    best: tuple[bytes, EncodedSize] | None = None
    for mode in modes:
        encoded = [np.packbits(m, bitorder="little").tobytes() if mode == "bitmap"
                   else runs_encode(m).tobytes() for m in masks]
        shared = iter(encoded)
        entries = [{**e, "positions_bytes": len(next(shared))} if e["kind"] == "shared" else e
                   for e in table]
        streams = {"masks": _compress(b"".join(encoded), settings.entropy), **common}
        head = {
            # "bits": the width the indices are packed at (without entropy coding)
            "codec": {"bits": settings.max_bits, "quantizer": settings.quantizer,
                      "entropy": settings.entropy, "positions": mode,
                      "default_bits": settings.bits,
                      "layer_bits": [list(p) for p in settings.layer_bits]},
            "tensors": entries,
            "streams": {k: len(streams[k]) for k in _STREAMS},
            **(header or {}),
        }
        head_bytes = json.dumps(head, separators=(",", ":")).encode()
        head_bytes = _HEADER_TAG[settings.entropy] + _compress(head_bytes, settings.entropy)
        data = MAGIC + struct.pack("<I", len(head_bytes)) + head_bytes + b"".join(
            streams[k] for k in _STREAMS)
        size = EncodedSize(total=len(data), header=len(head_bytes) + len(MAGIC) + 4,
                           masks=len(streams["masks"]), indices=len(streams["indices"]),
                           values=len(streams["values"]), positions=mode)
        if best is None or size.total < best[1].total:
            best = (data, size)
    assert best is not None
    return best


def _tensor_bytes(t: torch.Tensor) -> bytes:
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    a = t.numpy()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def _tensor_from_bytes(data: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(np.frombuffer(data, "<i2").copy()).view(torch.bfloat16).reshape(shape)
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise SqueezeDetError(f"corrupt .sqz data: unknown tensor type {dtype!r}")
    np_dtype = torch.empty(0, dtype=torch_dtype).numpy().dtype.newbyteorder("<")
    a = np.frombuffer(data, np_dtype).astype(np_dtype.newbyteorder("="))
    return torch.from_numpy(a.copy()).reshape(shape)


def is_encoded(path: str | Path) -> bool:
    """Whether the file at ``path`` starts with :data:`MAGIC`."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def decode(data: bytes, source: str = "data") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, header)`` of ``.sqz`` bytes; ``source`` names them in errors."""
    try:
        return _decode(data)
    except SqueezeDetError as exc:
        raise SqueezeDetError(f"{source}: {exc}") from None
    except (ValueError, KeyError, IndexError, TypeError, struct.error, lzma.LZMAError,
            zlib.error, UnicodeDecodeError) as exc:
        raise SqueezeDetError(f"{source}: corrupt or truncated .sqz file ({exc}); compress the "
                              "checkpoint again with 'squeezedet compress'") from None


def _decode(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if data[: len(MAGIC)] != MAGIC:
        raise SqueezeDetError("not a .sqz file (wrong magic bytes)")
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    raw_head = data[start : start + n]
    tags = {tag: name for name, tag in _HEADER_TAG.items()}
    if raw_head[:1] not in tags:
        raise SqueezeDetError("corrupt .sqz header")
    head = json.loads(_decompress(raw_head[1:], tags[raw_head[:1]]))
    codec = head["codec"]
    coder, bits = codec["entropy"], int(codec["bits"])
    offset = start + n
    streams: dict[str, bytes] = {}
    for key in _STREAMS:
        length = int(head["streams"][key])
        if offset + length > len(data):
            raise SqueezeDetError("truncated .sqz file")
        streams[key] = _decompress(data[offset : offset + length], coder)
        offset += length
    total_nnz = sum(int(e["nnz"]) for e in head["tensors"] if e["kind"] == "shared")
    if coder == "none":
        all_idx = _unpack_bits(streams["indices"], bits, total_nnz)
    else:
        all_idx = np.frombuffer(streams["indices"], np.uint8)
    if all_idx.size != total_nnz:
        raise SqueezeDetError("the index stream does not match the tensor table")
    state: dict[str, torch.Tensor] = {}
    m_off = i_off = v_off = 0
    for entry in head["tensors"]:
        shape = [int(s) for s in entry["shape"]]
        if entry["kind"] == "shared":
            numel = int(np.prod(shape, dtype=np.int64))
            pos = streams["masks"][m_off : m_off + int(entry["positions_bytes"])]
            m_off += int(entry["positions_bytes"])
            if codec["positions"] == "bitmap":
                mask = np.unpackbits(np.frombuffer(pos, np.uint8), count=numel,
                                     bitorder="little").astype(bool)
            else:
                mask = runs_decode(np.frombuffer(pos, np.uint8), numel)
            nnz = int(entry["nnz"])
            if int(mask.sum()) != nnz:
                raise SqueezeDetError(f"tensor {entry['name']}: positions do not match its entry count")
            idx = all_idx[i_off : i_off + nnz]
            i_off += nnz
            k = int(entry["codebook"])
            cb = np.frombuffer(streams["values"][v_off : v_off + 4 * k], "<f4").astype(np.float32)
            v_off += 4 * k
            if idx.size and int(idx.max()) >= k:
                raise SqueezeDetError(f"tensor {entry['name']}: an index points past its codebook")
            state[entry["name"]] = dequantize(mask, cb, idx, tuple(shape))
        else:
            nbytes = int(entry["bytes"])
            state[entry["name"]] = _tensor_from_bytes(streams["values"][v_off : v_off + nbytes],
                                                      entry["dtype"], shape)
            v_off += nbytes
    extras = {k: v for k, v in head.items() if k not in ("tensors", "streams")}
    return state, extras


def read_encoded(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`decode` the file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SqueezeDetError(f"{path}: cannot read ({exc.strerror})") from None
    return decode(data, str(path))
