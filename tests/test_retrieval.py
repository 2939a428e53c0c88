"""The instance-retrieval probe: seeded warped views, a bank and queries per image, a smaller curve probe."""

import pytest
import torch

from vitcf.engine.sources import ImageSet
from vitcf.engine.evaluate import knn_accuracy
from vitcf.engine.retrieval import InstanceProbe, first_instances, instance_views


def source(n=30, size=16):
    images = torch.randint(0, 256, (n, 1, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return ImageSet("toy", images, torch.zeros(n, dtype=torch.int64), ("x",))


def test_views_are_seeded_warps_split_into_bank_and_queries():
    config = InstanceProbe(images=20, views=6, bank_views=4, curve_images=5)
    bank, queries = instance_views(source(), config)
    assert len(bank) == 20 * 4 and len(queries) == 20 * 2
    assert torch.equal(torch.bincount(bank.labels), torch.full((20,), 4))
    assert len(bank.classes) == 20  # each source image is its own class
    again = instance_views(source(), config)
    assert torch.equal(again[0].images, bank.images) and torch.equal(again[1].images, queries.images)
    other = instance_views(source(), InstanceProbe(images=20, views=6, bank_views=4, curve_images=5, seed=1))
    assert not torch.equal(other[0].images, bank.images)
    views_of_first = bank.images[bank.labels == 0].float()
    assert (views_of_first[0] - views_of_first[1]).abs().mean() > 1  # the views differ from one another


def test_an_unwarped_probe_retrieves_every_instance_and_a_smaller_one_keeps_the_first_instances():
    still = InstanceProbe(images=10, views=4, bank_views=2, rotation=0.0, scale=(1.0, 1.0), shift=0.0, curve_images=3)
    bank, queries = instance_views(source(), still)
    flat = lambda s: s.images.flatten(1).float()  # noqa: E731
    assert knn_accuracy(flat(bank), bank.labels, flat(queries), queries.labels, ks=(1,))[1] == 100.0
    small = first_instances(bank, 3)
    assert len(small) == 6 and set(small.labels.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("bad, match", [({"views": 1}, "bank_views"), ({"bank_views": 10}, "bank_views"),
                                        ({"images": 0}, "images"), ({"curve_images": 5000}, "curve_images")])
def test_bad_settings_are_refused_naming_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        InstanceProbe(**bad)


def test_too_few_source_images_is_refused():
    with pytest.raises(ValueError, match="needs 1000 source images"):
        instance_views(source(30), InstanceProbe())
