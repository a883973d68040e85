"""nnU-Net v2 trainers that feed CT, PET and two click channels made on the fly.

Found by the stock commands with ``nnUNet_extTrainer=<repository>/Task1/trainers``:

    nnUNetv2_train DATASET 3d_fullres FOLD -tr autoPETTrainerClicks

nnU-Net imports every module of that folder as a top-level module, so this file's name
shadows no package, and shared code is imported with absolute imports (the project is
installed editable).

How the clicks get in (no custom preprocessor for clicks, no change to nnU-Net):

- The dataset has the image channels only (CT, PET); for every training sample
  :class:`Task1.click_transforms.AppendClickChannelsTransform` draws a step s in 0..max_step,
  simulates s tumor and s background clicks on the augmented patch with the challenge's rules
  (the click simulator's own code, :func:`clicks.simulate.simulate_patch_clicks`) and appends
  the encoded tumor and background channels. It runs after the spatial and
  intensity augmentations and mirroring, before the -1 padding label is removed.
- ``build_network_architecture`` adds the 2 click channels to the input channels; the stock
  predictor and :class:`Task1.predict.Task1Predictor` both rebuild the network through it.
- The final validation (``perform_actual_validation``) predicts each validation case with
  clicks simulated on the whole preprocessed case with ``final_validation_clicks`` (default 10) clicks per kind.
- ``-pretrained_weights`` of a checkpoint with 2 fewer input channels: the first layer is
  extended with zero weights for the click channels (see
  :func:`Task1.pretrained.extend_input_channels`), then nnU-Net's own loader runs.
- Organ supervision (``organ_supervision = True``: ``_organs``, ``_cpu_organs``, ``_smoke_organs``):
  the target also holds organ classes 2, 3, ... (a dataset from ``Task1.convert_dataset --organs``
  preprocessed with ``-preprocessor_name autoPETOrganPreprocessor``, checked at start); clicks
  come from the lesion class (1) only, and the project's predictor writes the lesion class only.
- Named variants change one attribute: CT/PET misalignment (``misalign_channel``, see
  :mod:`Task1.augmentations`), a share of uniformly random clicks (``click_random_fraction``).
- Every checkpoint stores the click configuration (``autopet_click_config``) so a predictor
  builds exactly the same channels; it is also written to ``click_config.json`` next to
  ``plans.json``.
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from autopet_common.nnunet_schedule import autoPETScheduledTrainer
from clicks.simulate import ClickDrawSettings, simulate_patch_clicks
from Task1.click_config import CLICK_CONFIG_FILE, CLICK_CONFIG_KEY, ClickConfig
from Task1.click_transforms import LESION_LABEL, AppendClickChannelsTransform, MAX_INTERACTION_STEP, click_channels



class autoPETTrainerClicks(autoPETScheduledTrainer):
    """CT + PET from the dataset, tumor and background click channels made per sample.

    Class attributes are the knobs the named variants below change one at a time.
    """

    # The one definition of the click inputs: tumor and background, appended after the dataset's
    # image channels. Task1.predict builds the network through this class and reads both.
    click_order = ("tumor", "background")
    n_click_channels = len(click_order)
    click_encoding = "edt"          # "edt" (distance-transform ball) or "gaussian"
    click_encoding_size = None      # ball radius / Gaussian sigma in voxels; None = clicks.encodings default
    max_interaction_step = MAX_INTERACTION_STEP
    # how training clicks depart from the challenge's (clicks.simulate.ClickDrawSettings)
    click_center_offset = 0         # perturbation of centre clicks, voxels per axis (0 = exact)
    click_edge_offset = 0           # perturbation of fill-up clicks, voxels per axis
    click_symmetric_offsets = True  # offsets in [-n, n]; the challenge's simulator uses [0, n]
    click_background_in_component = False  # False: the challenge's background fill-up quirk
    click_random_fraction = 0.0     # share of samples with uniformly random clicks instead of the challenge's
    # 0: a patch's lesions get all of a step's tumor clicks; n: the patch stands in a case with
    # 0..n further lesions and gets its share (Task1.click_transforms, clicks.simulate)
    click_case_extra_lesions = 0
    final_validation_clicks = MAX_INTERACTION_STEP  # clicks per kind in the final validation
    # CT/PET misalignment augmentation (Task1.augmentations): None = off, or "CT" / "PET", the
    # channel moved against the other and the label
    misalign_channel = None
    misalign_max_shift = 2.0        # voxels per axis
    misalign_max_degrees = 3.0
    misalign_probability = 0.5
    # Organ supervision: the target holds organ classes (2, 3, ...) besides the lesion (1), from a
    # dataset converted with --organs and preprocessed with autoPETOrganPreprocessor; clicks are
    # always drawn from the lesion class and predictors write the lesion class only
    organ_supervision = False
    organ_preprocessor = "autoPETOrganPreprocessor"
    # Classes nnU-Net's forced-foreground patches are centred on. None: nnU-Net's rule (a class
    # drawn uniformly among those present in the case). With organ targets that rule centres only
    # 1 in 8 forced patches on a lesion (7 organ classes compete), so lesions and their clicks
    # become rare in training; (LESION_LABEL,) centres them on lesions whenever the case has one.
    foreground_sampling_classes = None
    pet_channel_name = "PET"
    required_architecture = None    # e.g. "ResidualEncoderUNet" for the ResEnc variant
    # Schedule, optimizer, seed and inference knobs: autopet_common.nnunet_schedule
    # (epochs, iterations_per_epoch, optimizer_name, learning_rate, training_seed, ...).

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.pet_channel = self._find_pet_channel(dataset_json)
        if self.organ_supervision:
            self._check_organ_dataset(dataset_json)
        arch = self.configuration_manager.network_arch_class_name.split(".")[-1]
        if self.required_architecture is not None and arch != self.required_architecture:
            raise RuntimeError(
                f"{self.__class__.__name__} expects plans with the {self.required_architecture} architecture "
                f"but the plans '{self.plans_manager.plans_name}' use {arch}. For ResEnc plans run "
                "'nnUNetv2_plan_experiment -d ID -pl nnUNetPlannerResEncL' and train with "
                "'-p nnUNetResEncUNetLPlans'.")

    # ----------------------------------------------------------------- configuration
    @classmethod
    def _find_pet_channel(cls, dataset_json: dict) -> int:
        # Task1.convert_dataset records the channel order (PET may be named "noNorm" there)
        converted = (dataset_json.get("autopet_conversion") or {}).get("channels") or []
        if "PET" in converted:
            return converted.index("PET")
        names = dataset_json.get("channel_names", dataset_json.get("modality", {}))
        for key, name in names.items():
            if str(name).casefold() == cls.pet_channel_name.casefold():
                return int(key)
        if len(names) >= 2:
            return 1  # the autoPET layout: _0000 CT, _0001 PET
        raise RuntimeError(f"{cls.__name__} needs a PET channel: dataset.json channel_names {names} has none "
                           f"named '{cls.pet_channel_name}' and fewer than 2 channels")

    def _check_organ_dataset(self, dataset_json: dict) -> None:
        from Task1.organs import ORGANS_DATASET_KEY

        used = self.configuration_manager.preprocessor_name
        if ORGANS_DATASET_KEY not in dataset_json or used != self.organ_preprocessor:
            raise RuntimeError(
                f"{self.__class__.__name__} learns organ classes: it needs a dataset converted with "
                f"'python -m Task1.convert_dataset ... --organs DIR' (dataset.json has "
                f"{'an' if ORGANS_DATASET_KEY in dataset_json else 'no'} '{ORGANS_DATASET_KEY}' entry) and "
                f"preprocessed with '-preprocessor_name {self.organ_preprocessor}' (the plans name {used})")

    def _misaligned_channel(self) -> int | None:
        if self.misalign_channel is None:
            return None
        if self.misalign_channel not in ("CT", "PET"):
            raise RuntimeError(f"{self.__class__.__name__}: misalign_channel must be None, 'CT' or 'PET'")
        return self.pet_channel if self.misalign_channel == "PET" else (0 if self.pet_channel == 1 else 1)

    @classmethod
    def click_draw_settings(cls) -> ClickDrawSettings:
        return ClickDrawSettings(center_offset=cls.click_center_offset, edge_offset=cls.click_edge_offset,
                                 symmetric_offsets=cls.click_symmetric_offsets,
                                 background_in_component=cls.click_background_in_component)

    def click_config(self) -> dict:
        """Everything a predictor needs to build the same click channels (a versioned
        :class:`Task1.click_config.ClickConfig` record)."""
        return ClickConfig(trainer=self.__class__.__name__, n_click_channels=self.n_click_channels,
                           click_order=tuple(self.click_order), encoding=self.click_encoding,
                           encoding_size=self.click_encoding_size, pet_channel=self.pet_channel,
                           max_interaction_step=self.max_interaction_step,
                           center_offset=self.click_center_offset, edge_offset=self.click_edge_offset,
                           symmetric_offsets=self.click_symmetric_offsets,
                           background_in_component=self.click_background_in_component).to_dict()

    def _click_transform(self, fixed_step=None) -> AppendClickChannelsTransform:
        return AppendClickChannelsTransform(
            pet_channel=self.pet_channel, max_step=self.max_interaction_step, encoding=self.click_encoding,
            encoding_size=self.click_encoding_size, settings=self.click_draw_settings(), fixed_step=fixed_step,
            order=self.click_order, random_fraction=self.click_random_fraction,
            case_extra_lesions=self.click_case_extra_lesions)

    # ----------------------------------------------------------------- network
    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision: bool = True):
        # the dataset's image channels + the tumor and background click channels
        return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager,
                                                        num_input_channels + cls.n_click_channels,
                                                        num_output_channels, enable_deep_supervision)

    def initialize(self):
        super().initialize()
        # what the network really gets (nnU-Net only uses this for logging / plotting)
        self.num_input_channels += self.n_click_channels
        from Task1.pretrained import install_pretrained_weights_adapter

        install_pretrained_weights_adapter()

    # ----------------------------------------------------------------- data
    def get_training_transforms(self, *args, **kwargs):
        composed = nnUNetTrainer.get_training_transforms(*args, **kwargs)
        composed = self._insert_click_transform(composed, self._click_transform())
        channel = self._misaligned_channel()
        if channel is not None:  # before the clicks, which read the (unmoved) PET
            from Task1.augmentations import MisalignChannelTransform

            names = [type(t).__name__ for t in composed.transforms]
            composed.transforms.insert(names.index("AppendClickChannelsTransform"), MisalignChannelTransform(
                channel, self.misalign_max_shift, self.misalign_max_degrees, self.misalign_probability))
        return composed

    def get_validation_transforms(self, *args, **kwargs):
        composed = nnUNetTrainer.get_validation_transforms(*args, **kwargs)
        return self._insert_click_transform(composed, self._click_transform())

    @staticmethod
    def _insert_click_transform(composed, click_transform):
        """Put the click transform just before nnU-Net removes the -1 padding label, i.e. after
        all spatial/intensity augmentation and mirroring, while padding is still marked."""
        transforms = composed.transforms
        names = [type(t).__name__ for t in transforms]
        # batchgeneratorsv2 spells it RemoveLabelTansform in older and RemoveLabelTransform in newer releases
        anchors = [i for i, n in enumerate(names) if n.startswith("RemoveLabelT")] or \
            [i for i, n in enumerate(names) if n == "DownsampleSegForDSTransform"]
        if not anchors:
            raise RuntimeError(f"cannot place the click transform in nnU-Net's transforms {names}")
        position = anchors[0]
        transforms.insert(position, click_transform)
        return composed

    # ----------------------------------------------------------------- checkpoints
    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0:
            from autopet_common.image_io import atomic_write_json

            atomic_write_json(os.path.join(self.output_folder_base, CLICK_CONFIG_FILE), self.click_config())

    def save_checkpoint(self, filename: str) -> None:
        super().save_checkpoint(filename)
        if self.local_rank == 0 and not self.disable_checkpointing and os.path.isfile(filename):
            checkpoint = torch.load(filename, map_location="cpu", weights_only=False)
            checkpoint[CLICK_CONFIG_KEY] = self.click_config()
            tmp = filename + ".tmp"
            torch.save(checkpoint, tmp)
            os.replace(tmp, filename)

    def get_tr_and_val_datasets(self):
        if self.foreground_sampling_classes is not None:
            if self.dataset_class is None:
                from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

                self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
            self.dataset_class = _dataset_class_sampling(self.dataset_class, self.foreground_sampling_classes)
        return super().get_tr_and_val_datasets()

    # ----------------------------------------------------------------- final validation
    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's validation, with click channels simulated on each whole validation case
        (``final_validation_clicks`` clicks per kind, seeded by the case name)."""
        if not self.run_final_validation:
            return super().perform_actual_validation(save_probabilities)  # logs the skip
        stock_dataset_class = self.dataset_class
        self.dataset_class = _dataset_class_with_clicks(stock_dataset_class, self)
        try:
            super().perform_actual_validation(save_probabilities)
        finally:
            self.dataset_class = stock_dataset_class


def _dataset_class_sampling(base, classes: tuple[int, ...]):
    """A subclass of nnU-Net's dataset class whose cases offer only ``classes`` to the data
    loader's forced-foreground sampling (``properties['class_locations']``), when the case holds any
    of them; a case without them keeps all its classes. Nothing else changes."""
    if getattr(base, "foreground_sampling_classes", None) == tuple(classes):
        return base

    class _Sampling(base):
        foreground_sampling_classes = tuple(classes)

        def load_case(self, identifier):
            data, seg, seg_prev, properties = super().load_case(identifier)
            locations = properties.get("class_locations") or {}
            wanted = {c: v for c, v in locations.items() if c in self.foreground_sampling_classes and len(v)}
            if wanted:
                properties = {**properties, "class_locations": wanted}
            return data, seg, seg_prev, properties

    _Sampling.__name__ = f"{base.__name__}Sampling{'_'.join(str(c) for c in classes)}"
    return _Sampling


def _dataset_class_with_clicks(base, trainer: autoPETTrainerClicks):
    """A subclass of nnU-Net's dataset class whose ``load_case`` appends click channels."""

    class _WithClicks(base):
        def load_case(self, identifier):
            data, seg, seg_prev, properties = super().load_case(identifier)
            data = np.asarray(data[:], dtype=np.float32)
            seg0 = np.asarray(seg[:])[0]
            rng = np.random.default_rng(zlib.crc32(identifier.encode()))  # same clicks every run
            # the challenge's clicks (no offsets) on the whole case, with the trainer's quirk setting
            settings = ClickDrawSettings(background_in_component=trainer.click_background_in_component)
            clicks = simulate_patch_clicks(seg0 == LESION_LABEL, data[trainer.pet_channel],
                                           trainer.final_validation_clicks, rng,
                                           valid=seg0 >= 0, settings=settings)
            channels = click_channels(seg0.shape, clicks, trainer.click_encoding, trainer.click_encoding_size,
                                      trainer.click_order)
            return np.concatenate((data, channels)), seg, seg_prev, properties

    _WithClicks.__name__ = f"{base.__name__}WithClicks"
    return _WithClicks


# --------------------------------------------------------------------- named variants
class autoPETTrainerClicks_smoke(autoPETTrainerClicks):
    """2 epochs of 2 iterations: a CPU smoke test of the whole pipeline, not a model. Seeded,
    so the test suite can check that a seeded training repeats itself."""

    epochs = 2
    iterations_per_epoch = 2
    val_iterations_per_epoch = 1
    training_seed = 0


class autoPETTrainerClicks_smoke_organs(autoPETTrainerClicks_smoke):
    """The smoke test with organ supervision (the organ pipeline's CPU check)."""

    organ_supervision = True


class autoPETTrainerClicks_tiny(autoPETTrainerClicks):
    """10 epochs of 5 iterations: a few CPU minutes on tiny phantoms (demo models)."""

    epochs = 10
    iterations_per_epoch = 5
    val_iterations_per_epoch = 1


class autoPETTrainerClicks_cpu(autoPETTrainerClicks):
    """The shipped phantom model's schedule: 100 epochs x 50 iterations, AdamW from 2e-3, about
    38 minutes on 2 CPU cores with the small ``3d_cpu`` configuration that
    ``Task1.train_phantom_model`` adds to the plans (about 0.4 s per iteration of batch 2 x 48^3).
    Seeded; no final validation (the 11-step benchmark scores the model instead); no test-time
    mirroring (8 mirrored passes cost 8x the time per step on a CPU)."""

    epochs = 100
    iterations_per_epoch = 50
    val_iterations_per_epoch = 3
    optimizer_name = "adamw"
    learning_rate = 2e-3
    inference_tile_step_size = 0.75
    training_seed = 0
    run_final_validation = False
    inference_mirroring = False


class autoPETTrainerClicks_cpu_noclicks(autoPETTrainerClicks_cpu):
    """The ablation of the shipped model: the same network, data and schedule, but every
    training sample is step 0 (the click channels stay empty), so it never learns clicks."""

    max_interaction_step = 0
    final_validation_clicks = 0


class autoPETTrainerClicks_cpu_organs(autoPETTrainerClicks_cpu):
    """The shipped model's schedule with organ supervision: lesion and organ classes as targets
    (a dataset from ``Task1.convert_dataset --organs``, preprocessed with
    ``-preprocessor_name autoPETOrganPreprocessor``)."""

    organ_supervision = True


class autoPETTrainerClicks_cpu_organs_lesionpatches(autoPETTrainerClicks_cpu_organs):
    """``_cpu_organs`` whose forced-foreground patches are centred on lesions (when the case has
    one) instead of on a class drawn among lesion and 7 organs: as many lesion patches, and so
    as many click samples, as the plain click model sees, with the organ targets kept."""

    foreground_sampling_classes = (LESION_LABEL,)


class autoPETTrainerClicks_cpu_organs_caseclicks(autoPETTrainerClicks_cpu_organs_lesionpatches):
    """``_cpu_organs_lesionpatches`` whose patches get a whole case's share of each step's tumor
    clicks: the patch stands in a case with 0 to 11 further lesions (the training phantoms have
    1 to 12), so a lesion often has only its centre click, or none, as at prediction time,
    instead of a centre and up to 9 surface clicks. Same recipe, on the phantoms: validation
    DSC@10 0.841 against the default model's 0.870, so it is not the default (model card)."""

    click_case_extra_lesions = 11


class autoPETTrainerClicks_cpu_organs_randomised(autoPETTrainerClicks_cpu_organs_lesionpatches):
    """``_cpu_organs_lesionpatches`` for the mixed domain-randomised phantoms
    (``Task1.train_phantom_model --phantoms mixed``), shortened to 75 epochs so that the whole
    recipe (90 phantoms written, converted, preprocessed, then trained) fits in 60 minutes on the
    project's 2-core machine, where an iteration now takes about 0.75 s (0.6 s of it the network's
    forward and backward pass). Its first model is not the default: it fell below the default on
    the held-out phantoms (models/task1_phantom_organs/MODEL_CARD.md, "Tried for issue 33")."""

    epochs = 75


class autoPETTrainerClicks_cpu_organs_finetune(autoPETTrainerClicks_cpu_organs_lesionpatches):
    """``_cpu_organs_lesionpatches`` for fine-tuning a trained model (``nnUNetv2_train
    -pretrained_weights``, ``Task1.train_phantom_model --pretrained_weights``): 40 epochs from a
    quarter of the learning rate, so that a model that already segments the standard anatomy
    learns a harder training set (``--phantoms mostly_varied``) without starting over. nnU-Net
    loads every weight but the output layers (``seg_layers``), which start anew: the organ classes
    of the new set may differ. The default fine-tuned this way on the mostly-varied set did worse
    than the default on validation (models/task1_phantom_organs/MODEL_CARD.md, "Fifth try")."""

    epochs = 40
    learning_rate = 5e-4


class autoPETTrainerClicks_organs(autoPETTrainerClicks):
    """nnU-Net's schedule with organ supervision (see ``autoPETTrainerClicks_cpu_organs``)."""

    organ_supervision = True


class autoPETTrainerClicks_misaligned(autoPETTrainerClicks):
    """CT moved against PET and label (up to 2 voxels, 3 degrees) in half of the samples."""

    misalign_channel = "CT"


class autoPETTrainerClicks_mixedclicks(autoPETTrainerClicks):
    """One sample in five with uniformly random clicks instead of the challenge's (an 80/20 mix)."""

    click_random_fraction = 0.2


class autoPETTrainerClicks_250epochs(autoPETTrainerClicks):
    """A quarter of nnU-Net's default 1000 epochs."""

    epochs = 250


class autoPETTrainerClicks_gaussian(autoPETTrainerClicks):
    """Gaussian click heatmaps (sigma 3 voxels, as the challenge's reference) instead of balls."""

    click_encoding = "gaussian"


class autoPETTrainerClicks_perturbed(autoPETTrainerClicks):
    """Centre and fill-up clicks moved by up to 2 voxels per axis, either way (kept on their side
    of the tumor mask and off padding)."""

    click_center_offset = 2
    click_edge_offset = 2


class autoPETTrainerClicksResEnc(autoPETTrainerClicks):
    """For ResEnc plans (``-p nnUNetResEncUNetLPlans``): refuses plain plans with a clear error."""

    required_architecture = "ResidualEncoderUNet"
