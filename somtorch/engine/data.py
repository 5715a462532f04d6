"""Uniform random access to image stacks: tensors, arrays, PINK image files, ImageReaders.

Files are opened memory-mapped and only the requested rows are read, so a 100 GB image file
can be trained on or mapped with bounded memory.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from somtorch.errors import ShapeError

__all__ = ["ImageSource", "as_image_source", "open_for_som", "check_finite"]


class ImageSource:
    """Random access to ``(N, C, d, d)`` images.

    Parameters
    ----------
    data : Tensor, ndarray, path to a PINK image file, or an object with ``.data`` / ``.tensor``
        ``(N, d, d)`` inputs are treated as single-channel.
    """

    def __init__(self, data):
        self.path = None
        if isinstance(data, (str, os.PathLike)):
            from somtorch.io import read_images

            self.path = os.fspath(data)
            self._size = os.path.getsize(self.path)
            data = read_images(data)
        elif hasattr(data, "tensor") and not isinstance(data, (torch.Tensor, np.ndarray)):
            self.path = getattr(data, "path", None)
            data = data.tensor
        elif hasattr(data, "data") and not isinstance(data, (torch.Tensor, np.ndarray)):
            data = data.data
        if isinstance(data, np.ndarray):
            arr = data if data.flags.writeable else np.asarray(data)  # memmaps stay lazy
            self._np = arr
            self._t = None
            shape = arr.shape
        else:
            self._np = None
            self._t = torch.as_tensor(data)
            shape = tuple(self._t.shape)
        if len(shape) == 3:
            self._squeeze = True
            shape = (shape[0], 1, shape[1], shape[2])
        elif len(shape) == 4:
            self._squeeze = False
        else:
            raise ShapeError(f"images must be (N, d, d) or (N, C, d, d); got {shape}")
        if shape[-1] != shape[-2]:
            raise ShapeError(f"images must be square; got {shape[-2]}x{shape[-1]} (Images must be quadratic.)")
        self.shape = tuple(int(s) for s in shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def image_dim(self) -> int:
        return self.shape[-1]

    @property
    def channels(self) -> int:
        return self.shape[1]

    def get(self, idx, device=None) -> torch.Tensor:
        """Images at ``idx`` (int array/tensor or slice) as float32 ``(B, C, d, d)`` on ``device``."""
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        if self.path is not None and getattr(self, "_size", None) is not None:
            self._check_size()
        if self._t is not None:
            x = self._t[torch.as_tensor(idx)] if not isinstance(idx, slice) else self._t[idx]
        else:
            if isinstance(idx, slice):
                rows = np.ascontiguousarray(self._np[idx], dtype=np.float32)
                if not rows.flags.writeable:  # read-only memmap: torch needs its own copy
                    rows = rows.copy()
                x = torch.from_numpy(rows)
            else:
                idx = np.asarray(idx)
                # sorted reads are much faster on memory maps; restore the order afterwards
                order = np.argsort(idx, kind="stable")
                rows = np.asarray(self._np[idx[order]], dtype=np.float32)
                out = np.empty_like(rows)
                out[order] = rows
                x = torch.from_numpy(out)
        if self._squeeze:
            x = x.unsqueeze(1)
        return x.to(device=device, dtype=torch.float32)

    def _check_size(self) -> None:
        """A file shrunk under a memory map would kill the process (SIGBUS) on the next read."""
        try:
            now = os.path.getsize(self.path)
        except OSError as e:
            from somtorch.errors import TruncatedFileError

            raise TruncatedFileError(self.path, "file", None, None, f"cannot be read any more ({e})") from None
        if now < self._size:
            from somtorch.errors import TruncatedFileError

            raise TruncatedFileError(self.path, "file size", now, self._size,
                                     "the image file was truncated while in use; restore it and rerun "
                                     "(resume=true continues where the run stopped)")

    def __getitem__(self, idx) -> torch.Tensor:
        return self.get(idx)


def as_image_source(data) -> ImageSource:
    return data if isinstance(data, ImageSource) else ImageSource(data)


def open_for_som(som, data) -> ImageSource:
    """``data`` as an :class:`ImageSource` whose images have the SOM's channels and size
    (:class:`ShapeError` otherwise)."""
    src = as_image_source(data)
    g = som.geometry
    if src.channels != g.channels or src.image_dim != g.image_dim:
        raise ShapeError(f"images are {src.channels}x{src.image_dim}x{src.image_dim}, SOM expects "
                         f"{g.channels}x{g.image_dim}x{g.image_dim}")
    return src


def check_finite(images: torch.Tensor, rows, src: ImageSource, action: str, error=ShapeError) -> None:
    """Raise ``error`` naming the (up to 10) rows of ``images`` with NaN/inf pixels.

    ``rows`` are the image indices of ``images`` in ``src`` (array-like, one per image);
    ``action`` ends the message ("clean the data before <action>").
    """
    # one reduction: a NaN or inf pixel makes the sum non-finite (an overflowing sum of finite
    # pixels only sends the batch to the full test below); isfinite().all() is ~7x slower on CPU
    if bool(torch.isfinite(images.sum())) or bool(torch.isfinite(images).all()):
        return
    bad = np.asarray(rows)[(~torch.isfinite(images).flatten(1).all(1)).cpu().numpy()]
    raise error(f"non-finite pixel values in image(s) {bad.tolist()[:10]} of "
                f"{src.path or 'the input'}; clean the data before {action}")
