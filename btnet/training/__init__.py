"""Training: configs, recipes (trunk, mm, branch), the loop, checkpoints, distributed helpers.

Python entry point::

    from btnet.training import train, load_config
    result = train("configs/cpu/trunk_mr_v1.yaml", ["train.max_steps=50"], output_dir="runs/x")
    result.model_path  # a stored model folder (btnet.io.model_store.load_model)
"""

from btnet.training.api import TrainResult, train
from btnet.training.config import RECIPES, Config, ConfigError, load_config

__all__ = ["RECIPES", "Config", "ConfigError", "TrainResult", "load_config", "train"]
