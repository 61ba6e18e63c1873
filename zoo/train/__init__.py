"""Training: the options (config) and their checks (checks), the trainer (`zoo train`) and the run
directory it writes (runfiles), transfer learning, evaluation (`zoo evaluate`), DDP. Its pictures
(curves.png) are drawn by `zoo.viz.figures`.

    from zoo.train.trainer import TrainConfig, train
"""
