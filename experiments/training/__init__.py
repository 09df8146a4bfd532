"""Training experiments, shared by every entry script in ``experiments/``.

``allcnnc_net`` (the All-CNN-C ``nn.Module`` and its conv-layer shapes), ``lit_classifier``
(the ``LightningModule``, network passed in), ``synthetic`` / ``augment`` / ``cifar100_archive`` /
``fake_cifar100`` / ``data`` (data), ``cli`` (the LightningCLI), ``run_summary`` (per-run
callback), ``compare`` (the default side-by-side comparison), ``report`` (tables and plots),
``checks`` (argument errors). Imports nothing heavy itself.
"""
