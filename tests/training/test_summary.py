"""The Keras-style layer table: names by type and count, shapes, parameters."""

from collections import Counter

from digitlab.training.models import create_model
from digitlab.training.summary import keras_name, layer_rows


def test_keras_names_count_each_type_from_one():
    counts = Counter()
    names = [keras_name(kind, counts) for kind in ("Conv2d", "MaxPool2d", "ReLU", "Conv2d", "BatchNorm2d", "Linear")]
    assert names == ["conv2d_1", "max_pool2d_1", "re_lu_1", "conv2d_2", "batch_norm2d_1", "linear_1"]


def test_rows_of_a_tutorial_network():
    rows = layer_rows(create_model("cnn5x5_dense1000"))
    assert rows[0] == ("conv2d_1 (Conv2d)", (32, 24, 24), 832)
    assert rows[-1] == ("linear_2 (Linear)", (10,), 10010)
    assert sum(params for _, _, params in rows) == 1_087_106
