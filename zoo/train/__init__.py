"""Training: the options (config), the trainer (`zoo train`), evaluation (`zoo evaluate`), DDP.
Its pictures (curves.png) are drawn by `zoo.viz.figures`.

    from zoo.train.trainer import TrainConfig, train
"""
