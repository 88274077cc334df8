"""`CollectionDataManager`: nerfstudio's vanilla datamanager, or, for collections larger than
memory, one that streams images from disk.

nerfstudio's `VanillaDataManager` decodes every training image into one float tensor before step
1 (2,000 chairs x 24 views x 64 px RGBA: 3.1 GB, and 40 s of start-up). Streaming, each step's
rays come from `images_per_batch` images of as many objects drawn uniformly (every object's codes
keep training however many views it has), read by a pool of threads one batch ahead and kept as
uint8 in a bounded least-recently-used pool; the pixel sampler and ray generator are nerfstudio's.
Draws use torch's global generator, which nerfstudio's launcher seeds per rank, so ranks differ.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Type, Union

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import (
    DataManager,
    VanillaDataManager,
    VanillaDataManagerConfig,
    variable_res_collate,
)
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.pixel_samplers import PixelSampler
from nerfstudio.data.utils.dataloaders import FixedIndicesEvalDataloader, RandIndicesEvalDataloader
from nerfstudio.model_components.ray_generators import RayGenerator
from nerfstudio.utils.rich_utils import CONSOLE

from clipnerf_ns.validation import Bounds, check_numbers


@dataclass
class CollectionDataManagerConfig(VanillaDataManagerConfig):
    """nerfstudio's vanilla datamanager, streaming images from disk when the collection is large."""

    _target: Type = field(default_factory=lambda: CollectionDataManager)
    streaming: Literal["auto", "on", "off"] = "auto"
    """Read images from disk as steps need them ("on"), or decode them all into memory before step 1
    as nerfstudio does ("off"); "auto" streams once that cache would pass `cache_limit_gb`."""
    cache_limit_gb: Annotated[float, Bounds(0, 1e6)] = 1.0
    """Largest all-in-memory float cache "auto" accepts, in GB (the training and evaluation images)."""
    images_per_batch: Annotated[int, Bounds(1, 65_536)] = 64
    """Streaming: images one step's rays come from, one view each of as many uniformly drawn objects."""
    pool_images: Annotated[int, Bounds(1, 1 << 24)] = 4096
    """Streaming: decoded images kept in memory (uint8; the least recently used is dropped first)."""
    reader_threads: Annotated[int, Bounds(1, 256)] = 4
    """Streaming: threads reading the next batch's images while the current step runs."""


def float_cache_bytes(dataset: InputDataset) -> int:
    """Bytes of nerfstudio's cache of `dataset`: every image as float32 RGBA."""
    cameras = dataset.cameras
    return int((cameras.width.long() * cameras.height.long()).sum()) * 4 * 4


@dataclass(frozen=True)
class ViewsByObject:
    """The images of a dataset grouped by object: `order[starts[k]:starts[k] + counts[k]]` are object k's."""

    order: torch.Tensor
    starts: torch.Tensor
    counts: torch.Tensor

    @staticmethod
    def of(object_index: torch.Tensor) -> "ViewsByObject":
        _, inverse, counts = torch.unique(object_index.reshape(-1).cpu(), return_inverse=True, return_counts=True)
        return ViewsByObject(torch.argsort(inverse, stable=True), torch.cumsum(counts, 0) - counts, counts)

    def balanced_picks(self, count: int) -> torch.Tensor:
        """`count` image indices: objects drawn uniformly (no object twice while there are enough),
        then one of each drawn object's images uniformly."""
        num_objects = len(self.counts)
        objects = torch.randperm(num_objects)[:count] if count <= num_objects else torch.randint(num_objects, (count,))
        views = self.counts[objects]
        offsets = torch.minimum((torch.rand(len(objects)) * views).long(), views - 1)
        return self.order[self.starts[objects] + offsets]


class ImagePool:
    """Decoded images (nerfstudio's `get_data` in uint8) of one dataset, read by threads, kept up to
    `capacity` with the least recently used dropped first."""

    def __init__(self, dataset: InputDataset, capacity: int, threads: int) -> None:
        self.dataset, self.capacity, self.threads = dataset, capacity, threads
        self._images: OrderedDict[int, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._readers = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="clipnerf-images")

    def _read(self, index: int) -> dict:
        with self._lock:
            if index in self._images:
                self._images.move_to_end(index)
                return self._images[index]
        data = self.dataset.get_data(index, image_type="uint8")
        with self._lock:
            self._images[index] = data
            while len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return data

    def _read_all(self, indices: list[int]) -> list[dict]:
        return [self._read(index) for index in indices]

    def fetch(self, indices: torch.Tensor) -> list[Future]:
        """Start reading `indices`, a share per thread; the futures' results, concatenated in
        order, are the images' data."""
        shares = torch.tensor_split(indices, min(self.threads, len(indices)))
        return [self._readers.submit(self._read_all, share.tolist()) for share in shares]

    def __len__(self) -> int:
        return len(self._images)


class StreamedBatches:
    """Image batches of one dataset for a pixel sampler, each read while the previous is in use."""

    def __init__(self, dataset: InputDataset, config: CollectionDataManagerConfig, collate_fn) -> None:
        self.pool = ImagePool(dataset, config.pool_images, config.reader_threads)
        self.views = ViewsByObject.of(dataset.cameras.metadata["object_index"])
        self.count, self.collate_fn = config.images_per_batch, collate_fn
        self._next = self._fetch_next()

    def _fetch_next(self) -> list[Future]:
        return self.pool.fetch(self.views.balanced_picks(self.count))

    def __next__(self) -> dict:
        """The next batch, its images still uint8 (`_next_rays` converts only the sampled rays' pixels)."""
        ready, self._next = self._next, self._fetch_next()
        return self.collate_fn([data for future in ready for data in future.result()])


class CollectionDataManager(VanillaDataManager):
    """`VanillaDataManager`, or streaming (`CollectionDataManagerConfig.streaming`) for large collections."""

    config: CollectionDataManagerConfig

    def __init__(self, config: CollectionDataManagerConfig, device: Union[torch.device, str] = "cpu",
                 test_mode: Literal["test", "val", "inference"] = "val", world_size: int = 1, local_rank: int = 0, **kwargs) -> None:
        if not isinstance(config, CollectionDataManagerConfig):  # eval_setup gives runs of before this
            # class nerfstudio's config with our datamanager as its target: our options at their defaults
            config = CollectionDataManagerConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                                                    if f.init and f.name != "_target" and hasattr(config, f.name)})
        # What VanillaDataManager.__init__ sets, but its check for mixed image sizes, which builds a
        # Cameras object per image (15 s for 48,000 views), is one comparison of tensors here.
        check_numbers(config)
        self.config, self.device, self.world_size, self.local_rank, self.sampler = config, device, world_size, local_rank, None
        self.test_mode, self.test_split = test_mode, "test" if test_mode in ("test", "inference") else "val"
        self.streams: dict[str, StreamedBatches] = {}
        self.dataparser_config = config.dataparser
        if config.data is not None:
            config.dataparser.data = Path(config.data)
        else:
            config.data = config.dataparser.data
        self.dataparser = self.dataparser_config.setup()
        self.includes_time = self.dataparser.includes_time
        self.train_dataparser_outputs = self.dataparser.get_dataparser_outputs(split="train")
        self.train_dataset, self.eval_dataset = self.create_train_dataset(), self.create_eval_dataset()
        self.exclude_batch_keys_from_device = self.train_dataset.exclude_batch_keys_from_device
        for key, on_gpu in (("mask", config.masks_on_gpu), ("image", config.images_on_gpu)):
            if on_gpu and key in self.exclude_batch_keys_from_device:
                self.exclude_batch_keys_from_device.remove(key)
        cameras = self.train_dataparser_outputs.cameras
        if bool((cameras.width != cameras.width[0]).any() or (cameras.height != cameras.height[0]).any()):
            CONSOLE.print("Variable resolution, using variable_res_collate")
            config.collate_fn = variable_res_collate
        self.streaming = test_mode != "inference" and self._choose_streaming()  # inference sets nothing up
        DataManager.__init__(self)  # nn.Module's, then setup_train and setup_eval

    def _choose_streaming(self) -> bool:
        """Whether to stream (`streaming`, or for "auto" the size of the float cache), said in one line."""
        datasets = (self.train_dataset, self.eval_dataset)
        gigabytes = sum(float_cache_bytes(d) for d in datasets) / 1e9
        streaming = self.config.streaming == "on" or (self.config.streaming == "auto" and gigabytes > self.config.cache_limit_gb)
        how = f"streaming from disk ({self.config.images_per_batch} images of as many objects per step)" if streaming else "all in memory"
        CONSOLE.print(f"images: {sum(len(d) for d in datasets)} ({gigabytes:.2f} GB as floats), {how} "
                      f"(--pipeline.datamanager.streaming {self.config.streaming})")
        return streaming

    def _stream(self, split: str, dataset: InputDataset, rays: int) -> tuple[PixelSampler, RayGenerator]:
        """Stream `dataset`'s images as `split`; its pixel sampler and ray generator (nerfstudio's)."""
        self.streams[split] = StreamedBatches(dataset, self.config, self.config.collate_fn)
        return self._get_pixel_sampler(dataset, rays), RayGenerator(dataset.cameras.to(self.device))

    def setup_train(self) -> None:
        if not self.streaming:
            return super().setup_train()
        self.train_pixel_sampler, self.train_ray_generator = self._stream("train", self.train_dataset,
                                                                          self.config.train_num_rays_per_batch)

    def setup_eval(self) -> None:
        if not self.streaming:
            return super().setup_eval()
        self.eval_pixel_sampler, self.eval_ray_generator = self._stream("eval", self.eval_dataset, self.config.eval_num_rays_per_batch)
        # nerfstudio's full-image loaders read each image as it is asked for: nothing cached
        self.fixed_indices_eval_dataloader = FixedIndicesEvalDataloader(input_dataset=self.eval_dataset, device=self.device)
        self.eval_dataloader = RandIndicesEvalDataloader(input_dataset=self.eval_dataset, device=self.device)

    def _next_rays(self, split: str) -> tuple[RayBundle, dict]:
        sampler, generator = (self.train_pixel_sampler, self.train_ray_generator) if split == "train" else \
            (self.eval_pixel_sampler, self.eval_ray_generator)
        batch = sampler.sample(next(self.streams[split]))
        batch["image"] = batch["image"].float() / 255.0  # the sampled rays' pixels only
        return generator(batch["indices"]), batch

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        if not self.streaming:
            return super().next_train(step)
        self.train_count += 1
        return self._next_rays("train")

    def next_eval(self, step: int) -> tuple[RayBundle, dict]:
        if not self.streaming:
            return super().next_eval(step)
        self.eval_count += 1
        return self._next_rays("eval")
