"""Lightning experiments for ``unfoldconv``: the DeepOBS All-CNN-C network on CIFAR-100.

Layout (Lightning's habit): ``allcnnc_net`` (plain ``nn.Module``), ``lit_classifier``
(``LightningModule``), ``augment`` / ``cifar100_archive`` / ``synthetic`` / ``data``
(data), ``compare`` (the offline default comparison) and the entry script ``allcnnc.py``.
"""
