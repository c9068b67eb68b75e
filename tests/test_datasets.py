import numpy as np
import pytest
from PIL import Image

from pipeline.model import datasets
from pipeline.errors import PipelineError


def test_digits_split_is_seeded_stratified_and_complete():
    a, b = datasets.digits(0), datasets.digits(0)
    assert np.array_equal(a.x_test, b.x_test)
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797
    assert set(np.unique(a.y_test)) == set(range(10))
    assert a.x_train.shape[1:] == (8, 8, 1) and a.x_train.max() <= 1.0
    assert not np.array_equal(datasets.digits(1).x_test, a.x_test)


def make_image_folder(root, classes, per_class, size=(8, 8), mode="L"):
    rng = np.random.default_rng(0)
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            pixels = (rng.random(size[::-1] + ((3,) if mode == "RGB" else ())) * 50 + i * 60).astype(np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{j}.png")
    return root


def test_image_folder_loads_resizes_and_labels(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", ["cat", "dog", "owl"], per_class=10, size=(20, 12))
    data = datasets.load(str(folder), (8, 8, 1), 10, seed=0)
    assert data.x_train.shape[1:] == (8, 8, 1)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 30
    assert data.labels[:3] == ["cat", "dog", "owl"]
    # Class 2 images are brighter: the labels follow the folders, not the file order.
    assert data.x_test[data.y_test == 2].mean() > data.x_test[data.y_test == 0].mean()


def test_image_folder_with_more_classes_than_the_model(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", ["a", "b", "c"], per_class=3)
    with pytest.raises(PipelineError, match="3 classes.*model has 2"):
        datasets.load(str(folder), (8, 8, 1), 2, seed=0)


def test_image_folder_with_too_few_images(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", ["a", "b"], per_class=2)
    with pytest.raises(PipelineError, match="fewer than 3"):
        datasets.load(str(folder), (8, 8, 1), 10, seed=0)


def test_npz_missing_keys_and_channel_axis(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((10, 8, 8)), y_train=np.zeros(10, int))
    with pytest.raises(PipelineError, match="lacks x_test, y_test"):
        datasets.load(str(path), (8, 8, 1), 10, seed=0)
    np.savez(path, x_train=np.zeros((10, 8, 8)), y_train=np.zeros(10, int), x_test=np.zeros((3, 8, 8)),
             y_test=np.ones(3, int))
    data = datasets.load(str(path), (8, 8, 1), 10, seed=0)  # a missing channel axis of 1 is added
    assert data.x_test.shape == (3, 8, 8, 1) and len(data.x_train) + len(data.x_val) == 10


def test_fingerprint_follows_the_file_content(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros(3))
    first = datasets.fingerprint(str(path), 0)
    assert datasets.fingerprint(str(path), 1) != first
    np.savez(path, x=np.ones(3))
    assert datasets.fingerprint(str(path), 0) != first
