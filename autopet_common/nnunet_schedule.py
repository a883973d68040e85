"""The CPU-budget schedule knobs shared by this project's nnU-Net v2 trainers (Task 1's click
trainers and Task 2's longitudinal trainers): class attributes that named variants change one at
a time, applied the way nnU-Net expects (``nnUNetTrainer.__init__`` sets ``num_epochs`` & co. as
instance attributes, so they are overridden after it).

Imported by the trainer modules only (it imports nnU-Net and torch); the stock commands find the
trainers through ``nnUNet_extTrainer``, never this module.
"""
from __future__ import annotations

import numpy as np
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class autoPETScheduledTrainer(nnUNetTrainer):
    """``nnUNetTrainer`` with its schedule, optimizer, seed and inference settings as class
    attributes (None = nnU-Net's default)."""

    epochs = None
    iterations_per_epoch = None
    val_iterations_per_epoch = None
    optimizer_name = "sgd"          # "sgd" (nnU-Net's SGD, Nesterov, momentum 0.99) or "adamw"
    learning_rate = None            # initial learning rate (None = nnU-Net's 1e-2); poly decay either way
    training_seed = None            # seeds Python, NumPy and torch once (None = nnU-Net's unseeded runs)
    run_final_validation = True     # nnU-Net's sliding-window validation of the fold after training
    inference_mirroring = True      # False: the checkpoint allows no test-time mirroring (CPU speed)
    inference_tile_step_size = 0.5  # sliding-window step (fraction of the patch) the project's predictors use

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if self.training_seed is not None:
            import random

            random.seed(self.training_seed)
            np.random.seed(self.training_seed)
            torch.manual_seed(self.training_seed)
        super().__init__(plans, configuration, fold, dataset_json, device)
        for attribute, value in (("num_epochs", self.epochs), ("initial_lr", self.learning_rate),
                                 ("num_iterations_per_epoch", self.iterations_per_epoch),
                                 ("num_val_iterations_per_epoch", self.val_iterations_per_epoch)):
            if value is not None:
                setattr(self, attribute, value)

    def on_train_start(self):
        super().on_train_start()
        # the seeded weights depend on torch's thread count (nnU-Net's -device cpu: the CPU count),
        # so the log says what a bit-identical rerun needs
        self.print_to_log_file(f"{self.__class__.__name__}: training_seed {self.training_seed}, "
                               f"torch threads {torch.get_num_threads()}")

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.inference_mirroring:
            # training still mirrors (augmentation); predictors read this from the checkpoint
            self.inference_allowed_mirroring_axes = None
        return configured

    def configure_optimizers(self):
        if self.optimizer_name == "sgd":
            return super().configure_optimizers()
        if self.optimizer_name != "adamw":
            raise RuntimeError(f"{self.__class__.__name__}: unknown optimizer_name {self.optimizer_name!r}")
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

        # Adam reaches a usable model in a few thousand iterations, where nnU-Net's SGD needs
        # its long schedule: the choice for CPU-budget training
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def perform_actual_validation(self, save_probabilities: bool = False):
        if not self.run_final_validation:
            self.print_to_log_file(f"{self.__class__.__name__}: final validation skipped (run_final_validation "
                                   "= False); the project's benchmarks score the model instead")
            return
        super().perform_actual_validation(save_probabilities)
