"""MNIST from its four IDX files: a strict reader, the data set in memory, and dynamic binarisation.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a tiny big-endian header and raw data:

    byte 0-1   0x00 0x00                     magic: always zero
    byte 2     element type                  0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                                             0x0E float64
    byte 3     number of dimensions n        1 for labels, 3 for images
    n x int32  size of each dimension        big-endian: 60000, 28, 28
    ...        the elements, row-major       exactly prod(sizes) * itemsize bytes, nothing after

Files may be gzipped (the distribution's *.gz) or not; we tell by the gzip magic, not by the name. Nothing is
downloaded at run time: a missing, truncated or malformed file is an `IdxError` that names the file and
says what to do, so a half-copied data set fails loudly instead of training on garbage.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mnist"  # beside the project
IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE

# IDX element type code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"

# The four files of the standard distribution; each may also be stored without .gz, and some mirrors
# write "train-images.idx3-ubyte" with a dot, so both spellings are accepted.
SPLIT_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class IdxError(ValueError):
    """An IDX file is missing, truncated or malformed. The message names the file and the fix."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array of its own shape and type (native byte order).

    Raises IdxError naming `path` when the file is missing, is a broken gzip, has a wrong magic number, an
    unknown element type, or holds fewer or more bytes than its header promises.
    """
    path = Path(path)
    if not path.is_file():
        raise IdxError(f"{path}: no such file (nothing is downloaded at run time: copy the IDX file there)")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:  # BadGzipFile is an OSError; a cut-off stream is EOFError
            raise IdxError(f"{path}: broken gzip stream ({e}); probably a cut-off copy, copy it again") from e
    if len(raw) < 4:
        raise IdxError(f"{path}: only {len(raw)} bytes, too short for an IDX header (truncated copy?)")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise IdxError(
            f"{path}: wrong magic number 0x{raw[:4].hex()} (an IDX file starts 00 00, then a type code among "
            f"{', '.join(f'{c:02x}' for c in IDX_DTYPES)}, then the number of dimensions); is it an IDX file?"
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise IdxError(f"{path}: header of {ndim} dimensions is cut off (truncated copy? copy it again)")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header_end
    if got != expected:
        what = "truncated: copy it again" if got < expected else "has trailing bytes: is it the right file?"
        raise IdxError(f"{path}: header says shape {shape} = {expected} data bytes, file has {got} ({what})")
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def find_split_file(data_dir: Path, stem: str) -> Path:
    """The file of one split in data_dir: stem.gz, stem, or the dotted spelling (train-images.idx3-ubyte)."""
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem + ".gz", stem, dotted + ".gz", dotted]
    for name in candidates:
        if (data_dir / name).is_file():
            return data_dir / name
    raise IdxError(
        f"{data_dir / (stem + '.gz')}: no such file (also looked for {', '.join(candidates[1:])}). "
        f"Point --data at a folder holding the four MNIST IDX files; nothing is downloaded at run time."
    )


@dataclass
class Mnist:
    """MNIST in memory: grey levels in [0, 1] as float32 rows of 784 pixels, labels as int64."""

    train_images: Tensor  # [60000, 784]
    train_labels: Tensor  # [60000]
    test_images: Tensor  # [10000, 784]
    test_labels: Tensor  # [10000]
    source: Path
    fingerprint: str  # sha256 of the decoded files: names the data a checkpoint was trained on

    def summary(self) -> dict:
        return {"source": str(self.source), "train": len(self.train_images), "test": len(self.test_images),
                "fingerprint": self.fingerprint}


def load_mnist(data_dir: str | Path = DEFAULT_DATA) -> Mnist:
    """Read the four IDX files of data_dir and check they fit together (28x28 images, one label each)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise IdxError(f"{data_dir}: no such folder; point --data at a folder with the four MNIST IDX files")
    arrays = {}
    for key, stem in SPLIT_FILES.items():
        path = find_split_file(data_dir, stem)
        array = read_idx(path)
        want_ndim = 3 if key.endswith("images") else 1
        if array.ndim != want_ndim or (want_ndim == 3 and array.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE)):
            expected = "[N, 28, 28]" if want_ndim == 3 else "[N]"
            raise IdxError(f"{path}: shape {array.shape}, expected {expected}; is it the right file?")
        arrays[key] = (path, array)
    for split in ("train", "test"):
        (ipath, images), (lpath, labels) = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise IdxError(f"{ipath} holds {len(images)} images but {lpath} holds {len(labels)} labels")

    digest = hashlib.sha256()
    for key in SPLIT_FILES:
        digest.update(arrays[key][1].tobytes())

    def images(key: str) -> Tensor:
        # Grey levels as probabilities: the Bernoulli decoder is fit to binary samples drawn from them.
        return torch.from_numpy(arrays[key][1].reshape(-1, PIXELS)).float().div_(255.0)

    def labels(key: str) -> Tensor:
        return torch.from_numpy(arrays[key][1].astype(np.int64))

    return Mnist(images("train_images"), labels("train_labels"), images("test_images"), labels("test_labels"),
                 data_dir, digest.hexdigest()[:16])


def binarize(grey: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One Bernoulli sample per pixel with the grey level as probability (Salakhutdinov & Murray 2008).

    Called on every training batch ("dynamic binarisation"), so the model never sees the same binary image
    twice, which acts as a strong regulariser. The test set is binarised once with a fixed seed
    (`fixed_binarization`) so every evaluation scores the same binary images.
    """
    return torch.bernoulli(grey, generator=generator)


def fixed_binarization(grey: Tensor, seed: int = 0) -> Tensor:
    """The same binary sample of `grey` every time: for evaluation sets."""
    return binarize(grey, torch.Generator().manual_seed(seed))
