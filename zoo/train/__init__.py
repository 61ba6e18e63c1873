"""Training: the options (config), the trainer (`zoo train`), evaluation (`zoo evaluate`), plots, DDP.

    from zoo.train.trainer import TrainConfig, train
"""
