"""Bundle `blind_lesion_inpainting_3d`: its scripts (lesion bank, metrics, tissue classifier, blind targets) and
configs. The end-to-end CPU quick run is a slow test."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "blind_lesion_inpainting_3d"
CONFIGS = BUNDLE / "configs"


def _load_scripts():
    """The bundle's ``scripts`` package under a unique name (other bundles have a ``scripts`` package too)."""
    name = "blind_lesion_inpainting_3d_scripts"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, BUNDLE / "scripts" / "__init__.py", submodule_search_locations=[str(BUNDLE / "scripts")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


scripts = _load_scripts()


def _write(path: Path, array: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return str(path)


@pytest.fixture
def bank(tmp_path):
    shape = (12, 10, 8)
    masks = []
    for i in range(3):
        mask = np.zeros(shape, np.uint8)
        mask[i : i + 3, 2:5, 1:4] = 1
        masks.append(_write(tmp_path / f"mask{i}.nii.gz", mask))
    return shape, masks


def test_lesion_bank_masks_fill_minus_one_and_are_seeded(bank):
    shape, paths = bank
    transform = scripts.lesion_bank.LesionBankMaskd(keys="label", bank=paths, masked_key="image")
    image = np.random.default_rng(0).random((1, *shape)).astype(np.float32) + 0.5
    drawn = []
    for seed in (3, 3, 4):
        transform.set_random_state(seed)
        out = transform({"label": image})
        holes = out["mask"][0] > 0
        expected = np.asanyarray(nib.load(paths[np.random.RandomState(seed).randint(3)]).dataobj) > 0
        np.testing.assert_array_equal(holes, expected)  # the mask drawn by self.R, read unchanged
        np.testing.assert_array_equal(out["image"][0][holes], -1.0)
        np.testing.assert_array_equal(out["image"][0][~holes], image[0][~holes])
        drawn.append(holes)
    np.testing.assert_array_equal(drawn[0], drawn[1])


def test_lesion_bank_rejects_other_geometry_and_empty_banks(bank, tmp_path):
    shape, paths = bank
    transform = scripts.lesion_bank.LesionBankMaskd(keys="label", bank=paths)
    with pytest.raises(ValueError, match="bank masks must be on the image's"):
        transform({"label": np.ones((1, 12, 10, 9), np.float32)})
    empty = scripts.lesion_bank.LesionBankMaskd(
        keys="label", bank=[_write(tmp_path / "e.nii.gz", np.zeros(shape))]
    )
    with pytest.raises(ValueError, match="holds no lesion"):
        empty({"label": np.ones((1, *shape), np.float32)})
    with pytest.raises(ValueError, match="empty"):
        scripts.lesion_bank.LesionBankMaskd(keys="label", bank=[])


def test_psnr_pearson_and_dice_against_hand_values():
    target = np.zeros((4, 4, 4))
    target[0, 0, 0] = 2.0  # max 2
    pred = target.copy()
    pred[1, 1, 1] = 0.5  # one error of 0.5 over 64 voxels: RMSE = 0.5 / 8
    assert scripts.metrics.psnr(pred, target) == pytest.approx(20 * np.log10(2.0 / (0.5 / 8)))
    assert scripts.metrics.psnr(target, target) == float("inf")
    x = np.arange(10.0)
    assert scripts.metrics.pearson(3 * x + 1, x) == pytest.approx(1.0)
    assert scripts.metrics.pearson(-x, x) == pytest.approx(-1.0)
    a, b = np.zeros(10, bool), np.zeros(10, bool)
    a[:4], b[2:6] = True, True
    assert scripts.metrics.dice(a, b) == pytest.approx(2 * 2 / 8)
    with pytest.raises(ValueError, match="shape"):
        scripts.metrics.psnr(np.zeros(3), np.zeros(4))
    metric = scripts.metrics.VolumePSNR()
    metric(torch.from_numpy(pred)[None, None], torch.from_numpy(target)[None, None])
    assert metric.aggregate().item() == pytest.approx(20 * np.log10(32))


def test_gmm_tissue_classes_recover_three_intensity_classes():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 4, size=(30, 30, 30))
    means = {1: 0.3, 2: 0.8, 3: 1.2}  # CSF < GM < WM on a T1
    volume = np.vectorize(means.get)(truth) + rng.normal(0, 0.05, truth.shape)
    brain = np.ones(truth.shape, bool)
    brain[:5] = False
    labels = scripts.tissue.gmm_tissue_classes(volume, brain)
    assert (labels[~brain] == 0).all()
    assert (labels[brain] == truth[brain]).mean() > 0.99
    with pytest.raises(ValueError, match="empty brain"):
        scripts.tissue.gmm_tissue_classes(volume, np.zeros(truth.shape, bool))


class ConstantNet(torch.nn.Module):
    def forward(self, x):
        return torch.full_like(x, 5.0)


def test_non_blind_fill_replaces_only_the_lesion():
    image = torch.rand(1, 8, 8, 8) + 1
    mask = torch.zeros(1, 8, 8, 8)
    mask[0, 2:4, 2:4, 2:4] = 1
    filled = scripts.blind_data.fill_lesions(ConstantNet(), image, mask)
    assert (filled[mask > 0] == 5.0).all()
    assert torch.equal(filled[mask == 0], image[mask == 0])


def test_network_sees_minus_one_in_the_holes():
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x.clone()
            return x

    image, mask = torch.rand(1, 4, 4, 4) + 1, torch.zeros(1, 4, 4, 4)
    mask[0, 1, 1, 1] = 1
    scripts.blind_data.fill_lesions(Spy(), image, mask)
    assert seen["x"][0, 0, 1, 1, 1] == -1.0 and (seen["x"][0][mask == 0] > 0).all()


def _parser(*names: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / n) for n in names])
    parser["bundle_root"] = str(BUNDLE)
    return parser


def test_configs_define_both_stages_and_paper_defaults():
    stage1 = _parser("train.json")
    assert stage1["filters"] == 40 and stage1["max_epochs"] == 200 and stage1["cases_per_epoch"] == 50
    assert stage1["optimizer"]["_target_"] == "torch.optim.Adam"
    assert stage1["ckpt_name"] == "model_nonblind.pt" and stage1["fill_value"] == -1.0
    stage2 = _parser("train.json", "blind.json")
    assert stage2["stage"] == "blind" and stage2["ckpt_name"] == "model.pt"
    quick = _parser("train.json", "blind.json", "quick.json")
    assert quick["filters"] == 8 and quick["max_epochs"] <= 2
    assert quick["stage"] == "blind"  # quick.json leaves the stage alone
    for ids in (
        "initialize",
        "run",
        "training",
        "finalize",
        "train#trainer",
        "validate#evaluator",
        "val_interval",
    ):
        assert ids in stage1
    inference = _parser("inference.json")
    outputs = json.loads((CONFIGS / "metadata.json").read_text(encoding="utf-8"))["network_data_format"][
        "outputs"
    ]
    assert [inference["output_postfix"]] == list(outputs)  # the harness looks for <name>_<outputs key>.nii.gz
    evaluate = _parser("train.json", "evaluate.json")
    assert "evaluating" in evaluate


def test_network_def_matches_metadata_io():
    meta = json.loads((CONFIGS / "metadata.json").read_text(encoding="utf-8"))["network_data_format"]
    net = _parser("train.json").get_parsed_content("network_def")
    net.eval()
    channels = meta["inputs"]["image"]["num_channels"]
    with torch.no_grad():
        out = net(torch.rand(1, channels, 32, 32, 32))
    assert out.shape[1] == meta["outputs"]["pred"]["num_channels"]


def _config_list(*names: str) -> str:
    """A list of config files as `python -m monai.bundle run --config_file` takes it."""
    return str([str(CONFIGS / name) for name in names])


@pytest.mark.slow
def test_quick_training_both_stages_inference_and_evaluation(tmp_path):
    """The documented CPU quick run (both stages), inference keeping the input geometry, and the report."""
    files = _config_list("train.json", "quick.json")
    blind = _config_list("train.json", "blind.json", "quick.json")
    common_args = ["--bundle_root", str(BUNDLE), "--output_dir", str(tmp_path)]
    run = [sys.executable, "-m", "monai.bundle", "run"]
    subprocess.run([*run, "training", "--config_file", files, *common_args], check=True)
    subprocess.run([*run, "training", "--config_file", blind, *common_args], check=True)
    assert (tmp_path / "models" / "model.pt").exists() and (
        tmp_path / "models" / "model_nonblind.pt"
    ).exists()
    evaluate = _config_list("train.json", "blind.json", "quick.json", "evaluate.json")
    subprocess.run(
        [
            *run,
            "evaluating",
            "--config_file",
            evaluate,
            *common_args,
            "--validate#dataset#data",
            "$@validate#datalist[:1]",
        ],
        check=True,
    )
    summary = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))["summary"]
    assert {"psnr_input", "nonblind_psnr", "blind_psnr_ms", "tissue_dice_inpainted"} <= set(summary)
    assert (tmp_path / "orthogonal_slices.png").exists()
    import common.data

    source = common.data.load_datalist("3d", "test")[0]["image_ms"]
    subprocess.run(
        [
            *run,
            "--config_file",
            str(CONFIGS / "inference.json"),
            *common_args,
            "--datalist",
            f"[{{'image': '{source}'}}]",
            "--preprocessing_options#denoise",
            "False",
            "--preprocessing_options#bias_correct",
            "False",
        ],
        check=True,
    )
    written = nib.load(tmp_path / "t1_ms_pred.nii.gz")
    reference = nib.load(source)
    assert written.shape == reference.shape
    np.testing.assert_allclose(written.affine, reference.affine, atol=1e-4)
