"""One-off: write the tiny TensorFlow checkpoint under tests/fixtures/tf_bundle/ (run once, by hand).

The test suite never runs this (nor needs TensorFlow): it reads the files this wrote with
:mod:`squeezedet.interop.tf_bundle` and compares every tensor with ``expected.npz``.

What it writes is a TF1-style checkpoint as the original SqueezeDet's ``tf.train.Saver`` wrote
them (TensorBundle V2: ``model.ckpt-7.index`` + ``model.ckpt-7.data-00000-of-00001``), with the
original's variable names (``conv1/kernels``, ``fire2/squeeze1x1/kernels``, …, ``conv12/biases``)
at tiny channel counts, a few Momentum slots, ``global_step`` (int64) and ``iou``, plus variables
of other dtypes and ranks (float64, int32, float16, bool, a scalar), random values throughout. Over
sixty entries, so the index's key prefix compression and restart points are exercised. Also
``tf_same_ops.npz``: TensorFlow's "SAME" 3×3/2 convolution (with conv1's kernel) and max pool on an
even- and an odd-sized input, the reference for this project's ``padding="tf"`` layers.

Run it in a throwaway environment that has TensorFlow (it is not a dependency of this project):

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    /tmp/tfvenv/bin/python scripts/make_tf_fixture.py

Written with TensorFlow 2.21.0 (tf.compat.v1 graph mode).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tf_bundle"


def main() -> None:
    tf.compat.v1.disable_eager_execution()
    rng = np.random.default_rng(2017)
    values: dict[str, np.ndarray] = {}

    def conv(name: str, k: int, cin: int, cout: int) -> None:
        values[f"{name}/kernels"] = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
        values[f"{name}/biases"] = rng.standard_normal(cout).astype(np.float32)

    conv("conv1", 3, 3, 4)
    cin = 4
    for i in range(2, 12):
        conv(f"fire{i}/squeeze1x1", 1, cin, 2)
        conv(f"fire{i}/expand1x1", 1, 2, 2)
        conv(f"fire{i}/expand3x3", 3, 2, 2)
        cin = 4
    conv("conv12", 3, 4, 2 * (3 + 1 + 4))
    for name in ("conv1/kernels", "fire2/squeeze1x1/biases", "conv12/kernels"):
        values[f"{name}/Momentum"] = rng.standard_normal(values[name].shape).astype(np.float32)
    values["iou"] = rng.random((2, 5)).astype(np.float32)
    values["extra/float64"] = rng.standard_normal((2, 3)).astype(np.float64)
    values["extra/int32"] = rng.integers(-1000, 1000, (4,)).astype(np.int32)
    values["extra/float16"] = rng.standard_normal((3, 2)).astype(np.float16)
    values["extra/bool"] = rng.random(5) > 0.5
    values["extra/scalar"] = np.float32(rng.standard_normal())

    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(v, name=k) for k, v in values.items()]
        step = tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver(variables + [step],
                                         write_version=tf.compat.v1.train.SaverDef.V2)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(step.assign(7))
            OUT.mkdir(parents=True, exist_ok=True)
            prefix = saver.save(sess, str(OUT / "model.ckpt"), global_step=7,
                                write_meta_graph=False, write_state=False)
    # TensorFlow's own "SAME" conv1 (3x3/2) and pool (3x3/2) on an even- and an odd-sized input,
    # to check the PyTorch layers that reproduce them (squeezedet.models.layers.TFSame*)
    ops: dict[str, np.ndarray] = {}
    for tag, (h, w) in (("even", (8, 12)), ("odd", (7, 9))):
        x = rng.standard_normal((1, h, w, 3)).astype(np.float32)
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
            conv = tf.nn.bias_add(tf.nn.conv2d(x, values["conv1/kernels"], [1, 2, 2, 1], "SAME"),
                                  values["conv1/biases"])
            pool = tf.nn.max_pool2d(tf.nn.relu(conv), 3, 2, "SAME")
            conv_v, pool_v = sess.run([conv, pool])
        ops[f"{tag}_input"], ops[f"{tag}_conv"], ops[f"{tag}_pool"] = x, conv_v, pool_v
    np.savez_compressed(OUT / "tf_same_ops.npz", **ops)
    values["global_step"] = np.int64(7)
    # "/" cannot be in an npz key: "|" stands for it
    expected = {k.replace("/", "|"): np.asarray(v) for k, v in values.items()}
    np.savez_compressed(OUT / "expected.npz", **expected)
    for p in sorted(OUT.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")
    print("prefix:", prefix)


if __name__ == "__main__":
    main()
