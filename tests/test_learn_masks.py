"""Multi-block masks: pure arithmetic, checked directly."""
import numpy as np
import pytest

from wm.learn.masks import MaskSpec, block_shape, sample_masks, spec_for


def is_rectangle(idx: np.ndarray, cols: int) -> tuple[int, int] | None:
    rows_, cols_ = np.unique(idx // cols), np.unique(idx % cols)
    if len(idx) != len(rows_) * len(cols_):
        return None
    if np.ptp(rows_) != len(rows_) - 1 or np.ptp(cols_) != len(cols_) - 1:
        return None
    return len(rows_), len(cols_)


@pytest.mark.parametrize("image,patch", [(224, 16), (48, 8), (64, 8)])
def test_targets_are_equal_rectangles_and_context_avoids_them(image, patch):
    spec = spec_for(image, patch, mask_ratio=0.6, target_blocks=4)
    n = (image // patch) ** 2
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = sample_masks(rng, spec, batch=8)
        b, blocks, per = m.targets.shape
        assert (b, blocks) == (8, 4) and m.context.shape[0] == 8
        assert m.context.shape[1] >= spec.min_context
        shapes = set()
        for i in range(b):
            ctx = m.context[i]
            assert np.all(np.diff(ctx) > 0) and ctx.min() >= 0 and ctx.max() < n
            for t in m.targets[i]:
                shape = is_rectangle(t, image // patch)
                assert shape is not None
                shapes.add(shape)
                assert not np.intersect1d(t, ctx).size
        assert len(shapes) == 1   # one block size per batch: the batch is one tensor


def test_about_mask_ratio_of_the_image_is_removed():
    spec = spec_for(224, 16, mask_ratio=0.6, target_blocks=4)
    rng = np.random.default_rng(1)
    kept = [sample_masks(rng, spec, 16).context.shape[1] / 196 for _ in range(200)]
    removed = 1 - np.mean(kept)
    assert 0.5 < removed < 0.7, removed


def test_block_shapes_respect_scale_and_aspect():
    rng = np.random.default_rng(2)
    for _ in range(500):
        h, w = block_shape(rng, (14, 14), (0.15, 0.2), (0.75, 1.5))
        # Rounding to whole patches moves area and aspect a little.
        assert 0.1 * 196 <= h * w <= 0.26 * 196
        assert 0.5 <= h / w <= 2.0


def test_same_seed_same_masks():
    spec = spec_for(64, 8, 0.6, 4)
    a = sample_masks(np.random.default_rng(7), spec, 4)
    b = sample_masks(np.random.default_rng(7), spec, 4)
    assert np.array_equal(a.context, b.context) and np.array_equal(a.targets, b.targets)


def test_tiny_grid_and_huge_ratio_still_leave_context():
    spec = spec_for(32, 8, mask_ratio=0.95, target_blocks=4)   # a 4 x 4 grid
    rng = np.random.default_rng(3)
    for _ in range(50):
        m = sample_masks(rng, spec, 4)
        assert m.context.shape[1] >= 1
        for i in range(4):
            assert not np.intersect1d(m.targets[i], m.context[i]).size


def test_spec_from_settings_matches_ijepa_block_sizes():
    spec = spec_for(224, 16, 0.6, 4)
    assert spec.grid == (14, 14) and spec.n_targets == 4
    assert spec.target_scale == pytest.approx((0.15, 0.2))
    assert isinstance(spec, MaskSpec)
