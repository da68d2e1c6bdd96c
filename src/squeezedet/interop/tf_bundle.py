"""Read TensorFlow checkpoints (the TensorBundle "V2" format) without TensorFlow.

A checkpoint saved with ``prefix`` (``tf.train.Saver`` since TF 0.12, ``tf.train.Checkpoint``) is
``prefix.index`` plus data shards ``prefix.data-00000-of-0000N``. What this reader relies on:

- ``.index`` is an SSTable (LevelDB's table format, as TensorFlow's ``table`` library writes it):
  the file ends with a 48-byte footer — two block handles (metaindex, index; each two base-128
  varints: offset, size), zero padding to 40 bytes, then the 8-byte magic ``0xdb4775248b80fb57``
  (little-endian). Every block is followed by a 5-byte trailer: a compression byte (0 = none; the
  bundle writer never compresses) and the masked CRC-32C of the block plus that byte. A block is a
  run of entries — varint shared key length, varint unshared length, varint value length, the
  unshared key bytes, the value — then ``uint32`` restart offsets and their ``uint32`` count. The
  index block maps keys to the block handles of the data blocks, whose entries are the table's.
- The table's keys are tensor names, sorted; the empty key holds a ``BundleHeaderProto`` (field 1
  ``num_shards``, field 2 ``endianness``: 0 little, 1 big). Every other value is a
  ``BundleEntryProto``: 1 ``dtype`` (``DataType`` enum), 2 ``shape`` (``TensorShapeProto``: repeated
  field 2 ``dim``, each with field 1 ``size``), 3 ``shard_id``, 4 ``offset``, 5 ``size``, 6
  ``crc32c`` (fixed32, masked CRC-32C of the tensor's bytes), 7 ``slices`` (partitioned variables,
  not supported here).
- A numeric tensor is ``size`` raw bytes at ``offset`` of shard ``shard_id``, row-major, in the
  header's byte order.

Masked CRC-32C, as LevelDB and TensorFlow use it: ``((c >> 15 | c << 17) + 0xa282ead8) mod 2^32``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from squeezedet.errors import SqueezeDetError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5

#: TensorFlow ``DataType`` enum values → NumPy dtypes (little-endian); bfloat16 is widened.
DTYPES: dict[int, str] = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 9: "int64",
    10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64",
}
DTYPE_NAMES = {7: "string", 8: "complex64", 18: "complex128", 20: "resource", 21: "variant"}


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    try:  # a C implementation when one is installed (same numbers, faster on big tensors)
        import google_crc32c  # type: ignore[import-not-found]

        return int(google_crc32c.value(bytes(data)))
    except ImportError:
        pass
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB's masked CRC (stored CRCs are masked so CRCs of data holding CRCs stay sound)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def parse_proto(buf: bytes) -> dict[int, list[int | bytes]]:
    """A protobuf message's fields: number → values (ints for varint/fixed, bytes for
    length-delimited). Enough for the bundle's messages; no schema needed."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value = bytes(buf[pos:pos + n])
            if len(value) != n:
                raise ValueError("truncated field")
            pos += n
        elif wire == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lies and what it is."""

    name: str
    dtype: int  # TensorFlow DataType enum
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None  # masked, as stored
    sliced: bool

    @property
    def dtype_name(self) -> str:
        return DTYPES.get(self.dtype) or DTYPE_NAMES.get(self.dtype, f"DataType {self.dtype}")


def _parse_entry(name: str, value: bytes) -> BundleEntry:
    f = parse_proto(value)
    shape: list[int] = []
    for shape_msg in f.get(2, []):
        for dim in parse_proto(shape_msg).get(2, []):  # type: ignore[arg-type]
            shape.append(_int64(int(parse_proto(dim).get(1, [0])[0])))  # type: ignore[arg-type]
    crc = f.get(6)
    return BundleEntry(
        name=name, dtype=int(f.get(1, [0])[0]), shape=tuple(shape),  # type: ignore[arg-type]
        shard=int(f.get(3, [0])[0]), offset=int(f.get(4, [0])[0]),  # type: ignore[arg-type]
        size=int(f.get(5, [0])[0]),  # type: ignore[arg-type]
        crc32c=int(crc[0]) if crc else None,  # type: ignore[arg-type]
        sliced=bool(f.get(7)),
    )


def _block(data: bytes, offset: int, size: int, where: str) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if offset < 0 or end > len(data):
        raise SqueezeDetError(f"{where}: a block lies outside the file (truncated checkpoint?)")
    block = data[offset:offset + size]
    kind = data[offset + size]
    stored = struct.unpack_from("<I", data, offset + size + 1)[0]
    if mask_crc(crc32c(data[offset:offset + size + 1])) != stored:
        raise SqueezeDetError(f"{where}: checksum mismatch in the index (corrupt file)")
    if kind != 0:
        raise SqueezeDetError(f"{where}: compressed index blocks (type {kind}) are not supported")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise ValueError("block too short")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise ValueError("bad restart count")
    out = []
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + vlen > end:
            raise ValueError("bad block entry")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        out.append((key, block[pos:pos + vlen]))
        pos += vlen
    return out


def resolve_prefix(path: str | Path) -> Path:
    """The checkpoint prefix for ``path``: the prefix itself, its ``.index`` or a data shard, or a
    folder (with TensorFlow's ``checkpoint`` state file, or exactly one ``.index``)."""
    p = Path(path)
    if p.is_dir():
        state = p / "checkpoint"
        if state.is_file():
            for line in state.read_text().splitlines():
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
                    q = Path(name) if Path(name).is_absolute() else p / Path(name).name
                    return resolve_prefix(q)
        indexes = sorted(p.glob("*.index"))
        if len(indexes) != 1:
            raise SqueezeDetError(
                f"{p}: expected one TensorFlow checkpoint (a .index file) in the folder, found "
                f"{len(indexes)}; give the checkpoint prefix, e.g. {p}/model.ckpt-87000")
        return indexes[0].with_suffix("")
    name = p.name
    if name.endswith(".index"):
        return p.with_name(name[: -len(".index")])
    if ".data-" in name:
        return p.with_name(name[: name.index(".data-")])
    if name.endswith(".meta"):
        return p.with_name(name[: -len(".meta")])
    return p


class TensorBundle:
    """A TensorFlow checkpoint opened for reading.

    >>> ckpt = TensorBundle("model.ckpt-87000")      # or the .index file, or the folder
    >>> ckpt.names()[:2], ckpt.entries["conv1/kernels"].shape
    >>> kernel = ckpt.read("conv1/kernels")           # numpy float32 [3, 3, 3, 64] (HWIO)

    Errors (missing or truncated files, bad checksums, unsupported contents) are
    :class:`~squeezedet.errors.SqueezeDetError` naming the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.prefix = resolve_prefix(path)
        index = Path(str(self.prefix) + ".index")
        if not index.is_file():
            if self.prefix.is_file():
                raise SqueezeDetError(
                    f"{self.prefix}: no {index.name} beside it; this reads TensorFlow's V2 "
                    "checkpoints (prefix.index + prefix.data-*), not the V1 single-file format")
            raise SqueezeDetError(f"{index}: TensorFlow checkpoint index not found")
        self.index_path = index
        data = index.read_bytes()
        where = str(index)
        if len(data) < FOOTER_SIZE or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
            raise SqueezeDetError(f"{where}: not a TensorFlow checkpoint index (no table magic)")
        try:
            footer = data[len(data) - FOOTER_SIZE:]
            _, pos = _varint(footer, 0)  # metaindex offset
            _, pos = _varint(footer, pos)  # metaindex size
            idx_off, pos = _varint(footer, pos)
            idx_size, pos = _varint(footer, pos)
            table: list[tuple[bytes, bytes]] = []
            for _, handle in _block_entries(_block(data, idx_off, idx_size, where)):
                off, p = _varint(handle, 0)
                size, _ = _varint(handle, p)
                table += _block_entries(_block(data, off, size, where))
        except ValueError as exc:
            raise SqueezeDetError(f"{where}: malformed checkpoint index ({exc})") from None
        self.num_shards = 1
        self.big_endian = False
        self.entries: dict[str, BundleEntry] = {}
        try:
            for key, value in table:
                if key == b"":
                    header = parse_proto(value)
                    self.num_shards = int(header.get(1, [1])[0])  # type: ignore[arg-type]
                    self.big_endian = int(header.get(2, [0])[0]) == 1  # type: ignore[arg-type]
                    continue
                name = key.decode("utf-8")
                self.entries[name] = _parse_entry(name, value)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SqueezeDetError(f"{where}: malformed checkpoint entry ({exc})") from None
        self._shards: dict[int, bytes] = {}

    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return sorted(self.entries)

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def _shard(self, shard: int) -> bytes:
        if shard not in self._shards:
            path = self.shard_path(shard)
            if not path.is_file():
                raise SqueezeDetError(f"{path}: checkpoint data shard not found")
            self._shards[shard] = path.read_bytes()
        return self._shards[shard]

    def read(self, name: str, verify: bool = True) -> np.ndarray:
        """The tensor ``name`` as a NumPy array (bfloat16 widened to float32)."""
        try:
            e = self.entries[name]
        except KeyError:
            raise SqueezeDetError(f"{self.index_path}: no tensor named {name!r}") from None
        if e.sliced:
            raise SqueezeDetError(f"{self.prefix}: {name} is a partitioned (sliced) variable; "
                                  "not supported")
        if e.dtype not in DTYPES:
            raise SqueezeDetError(f"{self.prefix}: {name} holds {e.dtype_name} values; only "
                                  "numeric tensors are read")
        data = self._shard(e.shard)
        raw = data[e.offset:e.offset + e.size]
        where = self.shard_path(e.shard)
        if len(raw) != e.size:
            raise SqueezeDetError(f"{where}: {name} lies past the end of the file (truncated?)")
        if verify and e.crc32c is not None and mask_crc(crc32c(raw)) != e.crc32c:
            raise SqueezeDetError(f"{where}: checksum mismatch for {name} (corrupt file)")
        order: Literal["<", ">"] = ">" if self.big_endian else "<"
        if DTYPES[e.dtype] == "bfloat16":
            bits = np.frombuffer(raw, dtype=f"{order}u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            dtype = np.dtype(DTYPES[e.dtype]).newbyteorder(order)
            arr = np.frombuffer(raw, dtype=dtype)
        count = int(np.prod(e.shape, dtype=np.int64)) if e.shape else 1
        if arr.size != count:
            raise SqueezeDetError(f"{where}: {name} has {arr.size} values for shape {list(e.shape)}")
        return arr.reshape(e.shape).astype(arr.dtype.newbyteorder("="), copy=True)


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Every numeric, unpartitioned tensor of a TensorFlow checkpoint, by name."""
    bundle = TensorBundle(path)
    return {name: bundle.read(name) for name, e in sorted(bundle.entries.items())
            if e.dtype in DTYPES and not e.sliced}
