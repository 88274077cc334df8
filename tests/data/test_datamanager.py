"""The collection datamanager: object-balanced picks, the bounded image pool, and ns-train streaming
a real collection from disk (or caching it, chosen by size, the choice printed)."""

import numpy as np
import pytest
import torch
from nerfstudio.data.datasets.base_dataset import InputDataset

from clipnerf_ns.data.datamanager import ImagePool, ViewsByObject, float_cache_bytes
from clipnerf_ns.data.dataparser import CollectionDataParserConfig
from tests.helpers import run_dir, train


def test_picks_draw_objects_uniformly_whatever_their_view_counts():
    """Objects of 1, 5 and 100 views: each drawn a third of the time (uniform over images would
    give the big one 95%), each pick one of that object's own images, no object twice in a batch
    while there are enough."""
    object_index = torch.tensor([2] * 100 + [0] + [1] * 5)[torch.randperm(106, generator=torch.Generator().manual_seed(0))]
    views = ViewsByObject.of(object_index)
    torch.manual_seed(0)
    drawn = torch.cat([views.balanced_picks(2) for _ in range(3000)])
    shares = torch.bincount(object_index[drawn], minlength=3).float() / len(drawn)
    assert torch.allclose(shares, torch.full((3,), 1 / 3), atol=0.02), shares
    for _ in range(50):
        batch = views.balanced_picks(3)
        assert sorted(object_index[batch].tolist()) == [0, 1, 2]
    big = drawn[object_index[drawn] == 2]
    assert len(torch.unique(big)) > 90  # the big object's views all come up
    assert len(views.balanced_picks(10)) == 10  # more images than objects: objects repeat


@pytest.fixture()
def marker_dataset(marker_collection):
    outputs = CollectionDataParserConfig(data=marker_collection, alpha_color="none").setup().get_dataparser_outputs("train")
    return InputDataset(outputs)


def test_the_pool_keeps_at_most_its_capacity_and_reads_what_nerfstudio_reads(marker_dataset):
    pool = ImagePool(marker_dataset, capacity=3, threads=2)
    indices = torch.arange(len(marker_dataset))
    data = [item for future in pool.fetch(indices) for item in future.result()]  # in order
    assert len(pool) == 3 < len(marker_dataset)
    for index in (0, len(marker_dataset) - 1):
        assert data[index]["image"].dtype == torch.uint8
        assert np.array_equal(data[index]["image"].numpy(), marker_dataset.get_numpy_image(index))
    assert float_cache_bytes(marker_dataset) == len(marker_dataset) * 48 * 48 * 16


@pytest.mark.parametrize("streaming, expected", [("on", "streaming from disk"), ("auto", "all in memory")])
def test_ns_train_streams_or_caches_and_says_which(streaming, expected, marker_collection, tmp_path):
    """Through the real CLI: streaming (forced) trains, evaluates and saves; "auto" keeps a
    collection this small in memory. Both print their choice."""
    result = train(marker_collection, tmp_path, steps=4,
                   extra=["--pipeline.datamanager.streaming", streaming, "--pipeline.datamanager.images-per-batch", "4",
                          "--steps-per-eval-batch", "2"])
    assert expected in result.stdout, result.stdout[-2000:]
    assert list((run_dir(tmp_path) / "nerfstudio_models").glob("step-*.ckpt"))
