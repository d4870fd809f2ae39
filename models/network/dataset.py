"""Torch datasets over cache.h5 files (the BuildCache output) for training and inference.

cache.h5 holds `image` (N,H,W,3) uint8 RGB, `mask` (N,H,W) uint8 {0,1}, `posemap` (N,H/2,W/2)
uint8 (or (N,P,H/2,W/2) for per-joint maps), `prior` (N,H,W) uint8 = probability * 255, and
metadata. h5py handles are not fork-safe, so each process (DataLoader worker) opens its own file
handles lazily on first access.

    CacheDataset(paths, augment, prior_eps, raw)   samples as float tensors, or uint8 with raw=True
    normalize_image(image)                          (H,W,3) uint8 -> (3,H,W) float32 in [-1, 1]
    prior_to_probability(prior, eps)                (H,W) uint8 -> (1,H,W) float32 in [eps, 1-eps]
    normalize_batch(batch, prior_eps)               a raw (uint8) batch -> the float batch, on its device
    InMemoryBatch                                   one collated batch kept in memory (benchmarks)

The raw path exists for CUDA: a uint8 batch is a quarter of the float32 bytes over PCIe and is
normalised where it lands (models/network/batches.py batch_to_device); the pose map and prior are still the
cache's (drawing them on the GPU from the joints is not implemented: it could not be measured).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from models.sample import FLIPPED_JOINTS, NUM_JOINTS, AugmentConfig, CropConfig, augment_person

REQUIRED_DATASETS = ("image", "mask", "posemap", "prior")
RAW_KEYS = ("image", "posemap", "prior", "mask")  # the uint8 tensors of a raw sample
UINT8_MAX = 255.0


def _image_float(values: torch.Tensor) -> torch.Tensor:
    """uint8 tensor -> float32 in [-1, 1], elementwise (the one formula of both paths)."""
    return values.float().div_(UINT8_MAX / 2).sub_(1.0)


def _prior_float(values: torch.Tensor, eps: float) -> torch.Tensor:
    """uint8 tensor -> float32 probability in [eps, 1 - eps], elementwise."""
    return values.float().div_(UINT8_MAX).clamp_(eps, 1.0 - eps)


def _pose_float(values: torch.Tensor) -> torch.Tensor:
    """uint8 tensor -> float32 in [0, 1], elementwise."""
    return values.float().div_(UINT8_MAX)


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 RGB -> (3,H,W) float32 in [-1, 1] (the paper's input normalization)."""
    return _image_float(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))


def prior_to_probability(prior: np.ndarray, eps: float) -> torch.Tensor:
    """(H,W) uint8 prior -> (1,H,W) float32 probability clipped into [eps, 1 - eps] (finite logit)."""
    return _prior_float(torch.from_numpy(prior), eps).unsqueeze(0)


@functools.lru_cache(maxsize=16)
def _lookup_tables(device: torch.device, prior_eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image, posemap, prior) tables, (256,) float32 each on `device`: entry v = the float of uint8 v.

    Computed on the CPU and looked up on the device: a gather is exact anywhere, whereas CUDA may
    divide by a scalar as a multiplication by its reciprocal (up to one ulp off the CPU's division).
    """
    values = torch.arange(256, dtype=torch.uint8)
    return tuple(
        table.to(device) for table in (_image_float(values), _pose_float(values), _prior_float(values, prior_eps))
    )


def raw_sample(
    image: np.ndarray, posemap: np.ndarray, prior: np.ndarray, mask: np.ndarray, index: int
) -> dict[str, torch.Tensor]:
    """One sample's cache arrays as the uint8 tensors of CacheDataset(raw=True).

    image (H,W,3), posemap (h,w) or (P,h,w), prior (H,W), mask (H,W) uint8 -> image (3,H,W),
    posemap (P,h,w), prior (1,H,W), mask (1,H,W) uint8; index () int64.
    """
    pose = torch.from_numpy(posemap)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        "posemap": pose.unsqueeze(0) if pose.ndim == 2 else pose,
        "prior": torch.from_numpy(prior).unsqueeze(0),
        "mask": torch.from_numpy(mask).unsqueeze(0),
        "index": torch.tensor(index, dtype=torch.int64),
    }


def normalize_batch(batch: Mapping[str, torch.Tensor], prior_eps: float) -> dict[str, torch.Tensor]:
    """A raw batch (or sample) -> exactly the float tensors of CacheDataset(raw=False), on its device.

    batch: image (B,3,H,W), posemap (B,P,h,w), prior (B,1,H,W), mask (B,1,H,W) uint8 (or the same
    without B), on any device -> image float32 in [-1, 1], posemap in [0, 1], prior in
    [prior_eps, 1 - prior_eps], mask {0, 1}; same shapes and memory layout. Other keys (index)
    are passed through. The floats are bit-equal to the non-raw path's (same formulas, looked up).
    """
    wrong = {key: batch[key].dtype for key in RAW_KEYS if batch[key].dtype != torch.uint8}
    if wrong:
        raise ValueError(f"normalize_batch needs uint8 tensors (CacheDataset(raw=True)), got {wrong}")
    image_table, pose_table, prior_table = _lookup_tables(batch["image"].device, float(prior_eps))
    out = dict(batch)
    # long indices keep the input's shape and layout (channels-last stays channels-last)
    out["image"] = image_table[batch["image"].long()]
    out["posemap"] = pose_table[batch["posemap"].long()]
    out["prior"] = prior_table[batch["prior"].long()]
    out["mask"] = batch["mask"].float()
    return out


class CacheDataset(Dataset):
    """One or several cache.h5 files read as one dataset (global index = concatenation order).

    Each item is a dict of tensors:
      image (3,H,W) float32 in [-1,1]; posemap (P,H/2,W/2) float32 in [0,1] (P = 1 for the
      (N,h,w) layout); prior (1,H,W) float32 in [eps, 1-eps]; mask (1,H,W) float32 {0,1};
      index () int64 (global index).
    raw: the same tensors before normalisation (for CUDA: a quarter of the bytes over PCIe):
      image (3,H,W), posemap (P,H/2,W/2), prior (1,H,W), mask (1,H,W) uint8 and index; flips and
      augmentation as above, from the same random draws. normalize_batch turns a collated raw batch
      into exactly the non-raw batch.
    augment: None (samples as cached) or an AugmentConfig (models/sample/augment.py). A flip alone is
      applied to the cached tensors (left/right channels of a per-joint pose map swapped); anything
      that moves joints warps image, mask and joints together and redraws pose map and prior from
      the moved joints with the cache's own crop config (its ``crop_config`` attribute). Randomness
      comes from torch's RNG (per worker seeded by the DataLoader), so a seeded run is reproducible.
    prior_eps: clip of the prior probability away from 0 and 1 (its logit must stay finite).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike] | str | os.PathLike,
        augment: AugmentConfig | None = None,
        prior_eps: float = 1e-4,
        raw: bool = False,
    ) -> None:
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("CacheDataset needs at least one cache.h5 path")
        if not 0.0 < prior_eps < 0.5:
            raise ValueError(f"prior_eps must be in (0, 0.5), got {prior_eps}")
        self.augment = augment
        self.prior_eps = prior_eps
        self.raw = raw
        layouts = [self._validate(path) for path in self.paths]
        sizes = {layout[1:] for layout in layouts}
        if len(sizes) > 1:
            raise ValueError(f"cache files {[str(p) for p in self.paths]} have different crop sizes {sizes}")
        #: (H, W) of every sample's image and mask.
        self.crop_size: tuple[int, int] = layouts[0][1:]
        #: how the cache drew its pose maps and priors (augmentation redraws them the same way)
        self.crop_config: CropConfig | None = self._crop_config(self.paths[0]) if augment and augment.redraws else None
        self.offsets = np.concatenate([[0], np.cumsum([layout[0] for layout in layouts])]).astype(np.int64)
        self._files: list[h5py.File] | None = None
        self._owner_pid: int | None = None

    @staticmethod
    def _validate(path: Path) -> tuple[int, int, int]:
        """Check the layout of one cache file; return (samples, H, W)."""
        if not path.is_file():
            raise FileNotFoundError(f"cache file {path} does not exist")
        try:
            with h5py.File(path, "r") as h5:
                missing = [name for name in REQUIRED_DATASETS if name not in h5]
                if missing:
                    raise ValueError(f"cache file {path} lacks datasets {missing}")
                if h5["mask"].ndim != 3:
                    raise ValueError(f"cache file {path}: mask must be (N,H,W), got {h5['mask'].shape}")
                n, height, width = h5["mask"].shape
                shapes = {name: h5[name].shape for name in REQUIRED_DATASETS}
                posemap = shapes["posemap"]
                pose_hw = posemap[-2:]
                ok = (
                    shapes["image"] == (n, height, width, 3)
                    and shapes["prior"] == (n, height, width)
                    and len(posemap) in (3, 4)
                    and posemap[0] == n
                    and pose_hw == (height // 2, width // 2)
                )
                if not ok:
                    raise ValueError(f"cache file {path} has inconsistent shapes {shapes}")
                for name in REQUIRED_DATASETS:
                    if h5[name].dtype != np.uint8:
                        raise ValueError(f"cache file {path}: dataset {name!r} must be uint8, got {h5[name].dtype}")
                return int(n), int(height), int(width)
        except OSError as err:
            raise ValueError(f"cache file {path} is not a readable HDF5 file: {err}") from err

    @staticmethod
    def _crop_config(path: Path) -> CropConfig:
        with h5py.File(path, "r") as h5:
            if "crop_config" not in h5.attrs or "joints" not in h5:
                raise ValueError(f"cache file {path} has no crop_config attribute or joints: cannot augment joints")
            return CropConfig.from_dict(json.loads(h5.attrs["crop_config"]))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        # Open handles never travel to another process (spawned workers reopen their own).
        state = self.__dict__.copy()
        state["_files"] = None
        state["_owner_pid"] = None
        return state

    def _handles(self) -> list[h5py.File]:
        pid = os.getpid()
        if self._files is None or self._owner_pid != pid:
            # A forked child inherits the parent's handles: drop them (never close: they are shared).
            self._files = [h5py.File(path, "r") for path in self.paths]
            self._owner_pid = pid
        return self._files

    def close(self) -> None:
        """Close this process's file handles (they reopen on next access)."""
        if self._files is not None and self._owner_pid == os.getpid():
            for h5 in self._files:
                h5.close()
        self._files = None
        self._owner_pid = None

    def locate(self, index: int) -> tuple[int, int]:
        """Global index -> (file number, index inside that file)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples in {self.paths}")
        file_no = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return file_no, index - int(self.offsets[file_no])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        file_no, local = self.locate(index)
        h5 = self._handles()[file_no]
        if self.crop_config is not None:
            return self._augmented(h5, local, index)
        if self.raw:
            sample = raw_sample(*(h5[name][local] for name in RAW_KEYS), index)
            image, posemap, prior, mask = (sample[key] for key in RAW_KEYS)
        else:
            image = normalize_image(h5["image"][local])
            mask = torch.from_numpy(h5["mask"][local]).float().unsqueeze(0)
            prior = prior_to_probability(h5["prior"][local], self.prior_eps)
            pose_raw = _pose_float(torch.from_numpy(h5["posemap"][local]))
            posemap = pose_raw.unsqueeze(0) if pose_raw.ndim == 2 else pose_raw
        if self.augment is not None and self.augment.flip_prob > 0 and torch.rand(()).item() < self.augment.flip_prob:
            image, mask, prior, posemap = (t.flip(-1) for t in (image, mask, prior, posemap))
            if posemap.shape[0] == NUM_JOINTS:
                posemap = posemap[FLIPPED_JOINTS]
        return {
            "image": image,
            "posemap": posemap.contiguous(),
            "prior": prior,
            "mask": mask,
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def _augmented(self, h5: h5py.File, local: int, index: int) -> dict[str, torch.Tensor]:
        assert self.augment is not None and self.crop_config is not None
        # numpy's generator seeded from torch's RNG: one seed stream for the whole run
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        sample = augment_person(
            h5["image"][local], h5["mask"][local], h5["joints"][local], rng, self.augment, self.crop_config
        )
        if self.raw:
            return raw_sample(*(sample[key] for key in RAW_KEYS), index)
        pose = _pose_float(torch.from_numpy(sample["posemap"]))
        return {
            "image": normalize_image(sample["image"]),
            "posemap": (pose.unsqueeze(0) if pose.ndim == 2 else pose).contiguous(),
            "prior": prior_to_probability(sample["prior"], self.prior_eps),
            "mask": torch.from_numpy(sample["mask"]).float().unsqueeze(0),
            "index": torch.tensor(index, dtype=torch.int64),
        }


@dataclass
class InMemoryBatch:
    """One collated batch held in memory (benchmarks: the model step without the data path).

    image (B,3,H,W), posemap (B,P,H/2,W/2), prior (B,1,H,W), mask (B,1,H,W) float32; index (B,)
    (uint8 instead of float32 when collated from a raw CacheDataset).
    """

    image: torch.Tensor
    posemap: torch.Tensor
    prior: torch.Tensor
    mask: torch.Tensor
    index: torch.Tensor

    @classmethod
    def from_dataset(cls, dataset: Dataset, batch_size: int, start: int = 0) -> InMemoryBatch:
        """Collate samples start .. start+batch_size-1 of `dataset`."""
        items = [dataset[i] for i in range(start, start + batch_size)]
        return cls(**{key: torch.stack([item[key] for item in items]) for key in items[0]})

    def to(self, device: torch.device | str, channels_last: bool = False) -> InMemoryBatch:
        """Copy to `device`; channels_last applies to the 4-D image-like tensors."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        moved = {
            key: value.to(device, non_blocking=True, memory_format=fmt)
            if value.ndim == 4
            else value.to(device, non_blocking=True)
            for key, value in self.as_dict().items()
        }
        return InMemoryBatch(**moved)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The batch as the dict a DataLoader over CacheDataset yields."""
        return {
            "image": self.image,
            "posemap": self.posemap,
            "prior": self.prior,
            "mask": self.mask,
            "index": self.index,
        }
