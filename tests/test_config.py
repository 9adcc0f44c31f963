"""The run description (glow_nxn/config.py): validated once, saved whole, loaded typed, and
readable without TensorFlow."""
import dataclasses
import json
import subprocess
import sys

import pytest

from glow_nxn import config
from glow_nxn.config import DataConfig, ModelConfig, RunConfig, TrainConfig, preset
from glow_nxn.layers import COUPLINGS, MIXINGS
from test_support import REPO


def test_the_config_module_does_not_load_tensorflow():
    code = ("import sys; import glow_nxn.config as c; "
            "c.RunConfig(c.preset('mnist'), c.DataConfig(), c.TrainConfig()).to_json(); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_names_match_the_layer_and_dataset_registries():
    from glow_nxn.data import DATASETS

    assert set(config.MIXING_NAMES) == set(MIXINGS)
    assert set(config.COUPLING_NAMES) == set(COUPLINGS)
    assert set(config.DATASET_NAMES) == set(DATASETS)
    # train.py's default --dataset is the preset's name.
    assert set(config.PRESETS) <= set(config.DATASET_NAMES)


def test_run_config_json_round_trip():
    run = RunConfig(model=preset("mnist", mixing="emerging", seed=7),
                    data=DataConfig(dataset="folder:/images", shuffle_buffer=5),
                    train=TrainConfig(learning_rate=3e-4, ema_decay=0.0, lr_schedule="constant"))
    loaded = RunConfig.from_json(run.to_json())
    assert loaded == run and isinstance(loaded.model.image_shape, tuple)
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        fields = json.loads(run.to_json())
        fields["train"]["bogus"] = 2
        RunConfig.from_json(json.dumps(fields))
    with pytest.raises(ValueError, match="expected the keys"):
        RunConfig.from_json('{"model": {}}')
    # A run saved before a field existed loads with the field's default (no logit transform,
    # uniform dequantisation, no recomputation).
    fields = json.loads(run.to_json())
    del fields["model"]["logit_alpha"], fields["model"]["dequantizer_width"]
    del fields["train"]["remat"]
    loaded = RunConfig.from_json(json.dumps(fields))
    assert loaded.model.logit_alpha == 0.0 and loaded.model.dequantizer_width == 0
    assert loaded.train.remat is False


BAD_VALUES = [
    (TrainConfig, dict(optimizer="sgd"), "valid: adam, adamax"),
    (TrainConfig, dict(per_replica_batch_size=0), "per_replica_batch_size must be an integer >= 1"),
    (TrainConfig, dict(eval_every_steps=-1), "eval_every_steps must be an integer >= 0"),
    (TrainConfig, dict(learning_rate=0.0), "learning_rate must be a number above 0"),
    (TrainConfig, dict(learning_rate=float("nan")), "learning_rate must be a number"),
    (TrainConfig, dict(ema_decay=1.0), "ema_decay must be below 1"),
    (TrainConfig, dict(lr_floor=1.5), "lr_floor must be a number in 0.0..1.0"),
    (TrainConfig, dict(seed=-1), "seed must be an integer in 0..2147483647"),
    (TrainConfig, dict(grad_clip_norm=-1.0), "grad_clip_norm must be a number >= 0"),
    (TrainConfig, dict(recovery_lr_factor=0.0), "recovery_lr_factor must be a number"),
    (DataConfig, dict(shuffle_buffer=-1), "shuffle_buffer must be an integer >= 0"),
    (DataConfig, dict(augment_shift=-2), "augment_shift must be an integer >= 0"),
    (DataConfig, dict(dataset="mnistt"), "unknown dataset 'mnistt'; valid: celeba_hq_256, "
                                         "cifar10, imagenet32, imagenet64, mnist, or folder:"),
    (DataConfig, dict(dataset="folder:"), "unknown dataset 'folder:'"),
    (DataConfig, dict(on_bad_image="ignore"), "unknown on_bad_image 'ignore'; valid: skip, stop"),
    (TrainConfig, dict(train_steps=2**63), "train_steps must be an integer >= 1 below 2\\*\\*63"),
    (TrainConfig, dict(step_timeout_seconds=-1.0), "step_timeout_seconds must be a number >= 0"),
    (TrainConfig, dict(first_step_timeout_seconds=-1.0),
     "first_step_timeout_seconds must be a number >= 0"),
    (TrainConfig, dict(remat="yes"), "remat must be true or false, got 'yes'"),
    (TrainConfig, dict(jit_compile=1), "jit_compile must be true or false, got 1"),
    (TrainConfig, dict(scale_lr_by_workers=None), "scale_lr_by_workers must be true or false"),
    (RunConfig, dict(model=preset("mnist"), data=DataConfig(augment_shift=28),
                     train=TrainConfig()), "augment_shift must be an integer in 0..27, got 28"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=2, steps_per_level=1, seed=2**31),
     "seed must be an integer in 0..2147483647"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=2, steps_per_level=1, mixing="conv3x3"),
     "unknown mixing 'conv3x3'; valid: nxn"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=3, steps_per_level=1),
     "does not fit 3 levels"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=2, steps_per_level=1, logit_alpha=0.5),
     "logit_alpha must be in .0, 0.5. .0: no logit transform., got 0.5"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=2, steps_per_level=1, logit_alpha=-0.1),
     "logit_alpha must be a number >= 0"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=2, steps_per_level=1, learn_top="no"),
     "learn_top must be true or false, got 'no'"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=2, steps_per_level=1, num_classes=1),
     "num_classes must be 0 .unconditional. or at least 2, got 1"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=2, steps_per_level=1, num_classes=-2),
     "num_classes must be an integer >= 0"),
    (ModelConfig, dict(image_shape=(28, 28, 1), levels=2, steps_per_level=1, classifier=True),
     "classifier needs a class-conditional model"),
    (TrainConfig, dict(class_weight=-0.5), "class_weight must be a number >= 0"),
    (RunConfig, dict(model=preset("mnist", num_classes=10), data=DataConfig(),
                     train=TrainConfig(class_weight=0.5)),
     "class_weight 0.5 weights the classifier of a class-conditional model"),
    (RunConfig, dict(model=preset("mnist", num_classes=10, classifier=True), data=DataConfig(),
                     train=TrainConfig()), "a model has one exactly when class_weight > 0"),
]


@pytest.mark.parametrize("cls, fields, message", BAD_VALUES,
                         ids=[f"{c.__name__}-{next(iter(f))}" for c, f, _ in BAD_VALUES])
def test_bad_values_are_named(cls, fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls(**fields)


def test_validators_reject_booleans_and_accept_bounds():
    with pytest.raises(ValueError):
        config.check_positive_int("n", True)
    config.check_int("n", 0, 0, 0)
    config.check_float("x", 1, 0.0, 1.0)
    with pytest.raises(ValueError, match="x must be a number above 0"):
        config.check_float("x", 0.0, above=0.0)


def test_every_seed_in_range_builds_a_model():
    """Layer seeds are derived modulo 2**32 (NumPy's range): the largest seed used to crash."""
    from glow_nxn.model import Glow

    tiny = dict(image_shape=(8, 8, 3), levels=1, steps_per_level=2, hidden_width=4,
                mixing="shuffle")
    for seed in (0, 4295, config.MAX_SEED):
        Glow(ModelConfig(seed=seed, **tiny))


def test_presets_are_replaced_not_mutated():
    changed = preset("mnist", levels=1)
    assert changed.levels == 1 and config.PRESETS["mnist"].levels == 2
    assert dataclasses.replace(changed, levels=2) == config.PRESETS["mnist"]
