"""Dense CRF: the DeepLab parameters reach the library, and the CRF does what it is for (a noisy
prediction inside a uniform region follows its neighbours of the same colour)."""

import numpy as np
import pytest

from attention_scale.evaluation import crf

densecrf = pytest.importorskip("pydensecrf.densecrf", reason=crf.INSTALL_HINT)


def test_deeplab_defaults():
    p = crf.CrfParams()
    assert (p.bi_w, p.bi_xy_std, p.bi_rgb_std, p.pos_w, p.pos_xy_std, p.iterations) == \
        (4, 121, 5, 3, 3, 10)
    assert crf.available()


def _two_regions(rng):
    """A left-dark / right-bright image; probabilities leaning 0.6 to the true side, with some
    pixels leaning 0.55 the wrong way."""
    h, w = 24, 32
    image = np.zeros((h, w, 3), np.uint8)
    image[:, w // 2:] = 200
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2:] = 1
    prob = np.empty((2, h, w), np.float32)
    prob[1] = np.where(truth == 1, 0.6, 0.4)
    noisy = rng.random((h, w)) < 0.15
    prob[1][noisy] = np.where(truth[noisy] == 1, 0.45, 0.55)
    prob[0] = 1 - prob[1]
    return image, prob, truth, noisy


def test_crf_cleans_noisy_pixels_in_uniform_regions():
    image, prob, truth, noisy = _two_regions(np.random.default_rng(0))
    before = prob.argmax(axis=0)
    assert (before[noisy] != truth[noisy]).all()
    after = crf.DenseCRF()(image, prob)
    assert after.dtype == np.uint8 and after.shape == truth.shape
    np.testing.assert_array_equal(after, truth)


def test_same_as_the_library_called_directly():
    image, prob, _, _ = _two_regions(np.random.default_rng(1))
    params = crf.CrfParams(bi_w=5, bi_xy_std=50, bi_rgb_std=10, pos_w=2, pos_xy_std=1,
                           iterations=3)
    got = crf.DenseCRF(params).inference(image, prob)
    d = densecrf.DenseCRF2D(32, 24, 2)
    d.setUnaryEnergy(np.ascontiguousarray(-np.log(prob).reshape(2, -1)))
    d.addPairwiseGaussian(sxy=1, compat=2)
    d.addPairwiseBilateral(sxy=50, srgb=10, rgbim=np.ascontiguousarray(image[:, :, ::-1]),
                           compat=5)
    expected = np.array(d.inference(3)).reshape(2, 24, 32)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_bad_input_is_named():
    refine = crf.DenseCRF()
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        refine(np.zeros((4, 4), np.uint8), np.full((2, 4, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match="do not match the image 4x4"):
        refine(np.zeros((4, 4, 3), np.uint8), np.full((2, 5, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match="iterations"):
        crf.DenseCRF(crf.CrfParams(iterations=0))


def test_evaluation_with_crf_stores_the_refined_labels(tmp_path):
    import evalnets
    from attention_scale.data.images import read_image, read_label
    from attention_scale.data.lists import read_list
    from attention_scale.evaluation.inference import NetPredictor
    from attention_scale.evaluation.outputs import PredictionFolder
    from attention_scale.evaluation.runner import Evaluation, evaluate_list

    net = evalnets.write_net(tmp_path / "net", evalnets.attention_net(), seed=1)
    list_path = evalnets.write_dataset(tmp_path / "data", [(30, 31), (25, 20)])
    entries = read_list(list_path, tmp_path / "data")
    predictor, refine = NetPredictor(*net), crf.DenseCRF()
    folder = PredictionFolder.under(tmp_path / "out")
    evaluate_list(entries, Evaluation(["bg", "a", "b", "c"]), folder, predictor, refine,
                  progress=False)
    changed = 0
    for entry in entries:
        image = read_image(entry.image)
        probabilities = predictor.predict(image).probabilities
        stored = read_label(folder.prediction_path(entry.name))
        np.testing.assert_array_equal(stored, refine(image, probabilities))
        changed += int((stored != probabilities.argmax(axis=0)).sum())
    assert changed > 0  # the CRF did change something on these random-weight predictions
