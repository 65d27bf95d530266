"""Training: the loop (trainer), AdamW groups (optim), learning-rate schedules, checkpoints, DDP."""

from gptlab.train.schedule import SCHEDULES, LRSchedule
from gptlab.train.trainer import TrainResult, read_metrics, train

__all__ = ["LRSchedule", "SCHEDULES", "TrainResult", "read_metrics", "train"]
