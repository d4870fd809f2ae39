"""pipeline/lib/folder.py: shard counts are a true maximum, and shards split cleanly as folders grow."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.lib.folder import shard_count, shard_of, shards_overlap


@pytest.mark.parametrize(("images", "shard_size"), [(0, 5), (1, 1), (37, 5), (1000, 200), (5000, 64)])
def test_shard_size_is_a_true_maximum_and_the_count_the_smallest_power_of_two(images, shard_size) -> None:
    names = [f"photos/{i:05d}.jpg" for i in range(images)]
    count = shard_count(names, shard_size)
    assert count >= 1 and count & (count - 1) == 0
    fullest = max(Counter(shard_of(n, count) for n in names).values(), default=0)
    assert fullest <= shard_size
    if count > 1:  # half as many shards would overfill one
        assert max(Counter(shard_of(n, count // 2) for n in names).values()) > shard_size


def test_each_shard_of_a_doubled_count_is_half_of_one_earlier_shard() -> None:
    names = [f"{i}.png" for i in range(400)]
    small, large = shard_count(names[:200], 20), shard_count(names, 20)
    assert large > small
    for n in names[:200]:
        assert shards_overlap(shard_of(n, large), large, shard_of(n, small), small)


def test_shard_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="shard_size"):
        shard_count(["a.jpg"], 0)
