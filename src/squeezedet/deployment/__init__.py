"""Deployment: running a trained model outside the training code.

- :mod:`~squeezedet.deployment.preprocess`: images → the network's input batch; calibration and
  parity images.
- :mod:`~squeezedet.deployment.runners` (a package): the
  :class:`~squeezedet.deployment.runners.Runner` protocol, one module per backend (eager
  PyTorch, TorchScript, ONNX Runtime, OpenVINO) registered in its ``BACKENDS``, ``load_runner``;
  ``backend="auto"`` chooses by measuring with :mod:`~squeezedet.deployment.tuning` (timing of
  the candidates, the cache of choices).
- :mod:`~squeezedet.deployment.graph`: the graphs exports write; :mod:`~squeezedet.deployment.export`
  writes them (ONNX, OpenVINO IR, TorchScript) with metadata;
  :mod:`~squeezedet.deployment.quantize`: int8; :mod:`~squeezedet.deployment.parity`: the check
  against PyTorch.
- :mod:`~squeezedet.deployment.benchmark`: latency per backend and precision against a baseline
  (one row: :mod:`~squeezedet.deployment.benchmark_row`; the CPU's peaks:
  :mod:`~squeezedet.deployment.peaks`; the table: :mod:`~squeezedet.deployment.benchmark_table`);
  :mod:`~squeezedet.deployment.energy`: joules per image (RAPL, NVML, or a labelled estimate).
"""
