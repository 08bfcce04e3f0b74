"""Bundle `blind_lesion_inpainting_3d`: its scripts (lesion bank, evaluation metrics, tissue classifier, blind
targets) and configs. The end-to-end CPU quick run is a slow test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import monai.bundle
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from common.bundle_scripts import load_bundle_scripts

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "blind_lesion_inpainting_3d"
CONFIGS = BUNDLE / "configs"


scripts = load_bundle_scripts(BUNDLE)


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
    """The paper's whole-volume PSNR takes the truth's own maximum as the peak (common.metrics.PSNRMetric with
    max_val=None, also the validation key metric); Dice is 1 for two empty maps."""
    evaluation = scripts.evaluation
    target = np.zeros((4, 4, 4))
    target[0, 0, 0] = 2.0  # max 2
    pred = target.copy()
    pred[1, 1, 1] = 0.5  # one error of 0.5 over 64 voxels: RMSE = 0.5 / 8
    assert evaluation.volume_psnr(pred, target) == pytest.approx(20 * np.log10(2.0 / (0.5 / 8)))
    assert evaluation.volume_psnr(target, target) == float("inf")
    x = np.arange(10.0)[:, None, None]
    assert evaluation.volume_pearson(3 * x + 1, x) == pytest.approx(1.0)
    assert evaluation.volume_pearson(-x, x) == pytest.approx(-1.0)
    a, b = np.zeros(10, bool), np.zeros(10, bool)
    a[:4], b[2:6] = True, True
    assert evaluation.dice(a, b) == pytest.approx(2 * 2 / 8)
    assert evaluation.dice(np.zeros(4, bool), np.zeros(4, bool)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        evaluation.volume_psnr(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))
    metric = _parser("train.json").get_parsed_content("validate#key_metric#val_psnr#metric_fn")
    metric(torch.from_numpy(pred)[None, None], torch.from_numpy(target)[None, None])
    assert metric.aggregate().item() == pytest.approx(20 * np.log10(32), rel=1e-6)


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
    # stage 1 starts from scratch, stage 2 from the stage-1 weights (loaded once, by train#handlers)
    assert stage1["init_checkpoint"] is None
    assert stage2.get_parsed_content("init_checkpoint") == stage2.get_parsed_content("nonblind_checkpoint")
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
    assert list(outputs) == ["pred"]  # MONAI Label takes the first output: the abnormal-WM map
    assert (inference["output_postfix"], inference["inpainted_postfix"]) == ("abnormal_wm", "inpainted")
    assert (
        stage1["lesion_bank_size"] == 500 and quick["lesion_bank_size"] == 30
    )  # the paper's bank; CPU quick run
    evaluate = _parser("train.json", "evaluate.json")
    assert "evaluating" in evaluate


def test_threshold_candidates_are_0_05_to_1_in_steps_of_0_05():
    sweep = _parser("train.json", "evaluate.json")["threshold_sweep"]
    bounds = {k: sweep[k] for k in ("start", "stop", "step")}
    candidates = scripts.evaluation.ThresholdSweep(None, "", [{}], "", {}, **bounds).thresholds
    assert candidates == [round(0.05 * i, 2) for i in range(1, 21)]


def test_evaluation_needs_only_the_checkpoints_and_builds_no_training_setup(tmp_path):
    """evaluate.json scores both stages from `checkpoint` / `nonblind_checkpoint` (here a 2-filter network on
    one test subject) and writes the report; it builds nothing of training: no models/ or tensorboard/ folder."""
    import common.data

    width = {"network_def#filters": 2, "network_def#levels": 2}
    parser = _parser("train.json", "quick.json")
    parser.update(width)
    network = parser.get_parsed_content("network_def")
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("model.pt", "model_nonblind.pt"):
        torch.save(network.state_dict(), weights / name)
    output_dir = tmp_path / "eval"
    monai.bundle.run(
        "evaluating",
        config_file=[str(CONFIGS / n) for n in ("train.json", "quick.json", "evaluate.json")],
        bundle_root=str(BUNDLE),
        output_dir=str(output_dir),
        ckpt_dir=str(weights),
        datalist=common.data.load_datalist("3d", "test")[:1],
        **width,
    )
    summary = json.loads((output_dir / "evaluation.json").read_text(encoding="utf-8"))["summary"]
    assert {"nonblind_psnr", "blind_psnr_ms", "tissue_dice_inpainted", "abnormal_wm_dice"} <= set(summary)
    assert (output_dir / "evaluation.md").exists() and (output_dir / "orthogonal_slices.png").exists()
    assert not (output_dir / "models").exists() and not (output_dir / "tensorboard").exists()


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
            "--datalist",
            "$monai.data.load_decathlon_datalist(@datalist_file, False, 'test')[:1]",
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
    reference = nib.load(source)
    subject = Path(source).parent.relative_to(common.data.build_sample_data())  # outputs keep it (sub-008)
    for name in ("t1_ms_abnormal_wm.nii.gz", "t1_ms_inpainted.nii.gz"):
        written = nib.load(tmp_path / subject / name)
        assert written.shape == reference.shape
        np.testing.assert_allclose(written.affine, reference.affine, atol=1e-4)


def test_abnormal_wm_map_is_the_thresholded_difference_inside_white_matter():
    rng = np.random.default_rng(0)
    inpainted = rng.uniform(0.3, 1.3, size=(20, 20, 20))
    lesioned = inpainted.copy()
    lesioned[5:9, 5:9, 5:9] -= 0.5  # a dark lesion, half of it outside white matter
    wm = np.zeros(inpainted.shape, bool)
    wm[:7] = True
    expected = np.zeros(inpainted.shape, bool)
    expected[5:7, 5:9, 5:9] = True
    found = scripts.abnormal_wm.abnormal_wm_map(lesioned, inpainted, 0.25, wm=wm)
    np.testing.assert_array_equal(found, expected)
    assert not scripts.abnormal_wm.abnormal_wm_map(lesioned, inpainted, 0.6, wm=wm).any()
    with pytest.raises(ValueError, match="positive"):
        scripts.abnormal_wm.abnormal_wm_map(lesioned, inpainted, 0.0, wm=wm)
    with pytest.raises(ValueError, match="differ in shape"):
        scripts.abnormal_wm.abnormal_wm_map(lesioned, inpainted, 0.25)  # default WM prior: MNI grid only


def test_default_white_matter_is_the_mni_prior_on_the_mni_grid():
    wm = scripts.abnormal_wm.mni_white_matter()
    assert wm.shape == (182, 218, 182) and wm.dtype == bool
    assert 350_000 < wm.sum() < 800_000  # adult WM is ~0.4-0.7 L at 1 mm^3 per voxel
    assert (
        wm[91, 126 + 10, 72 + 20] and not wm[0, 0, 0]
    )  # deep WM near the ventricles (MNI ~(0, 10, 20)); corner


def _native_t1(folder: Path, shape=(40, 48, 40), spacing=4.0):
    """A brain-like ellipsoid (WM core, GM shell, CSF rim) on a coarse x-flipped grid lying in MNI world space,
    and a lesion mask in its WM; returns the NIfTI paths."""
    centre = (np.asarray(shape) - 1) / 2
    radii = np.asarray(shape) * 0.42
    grid = np.indices(shape).astype(np.float64)
    r = np.sqrt((((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(axis=0))
    t1 = np.select([r < 0.6, r < 0.9, r < 1.0], [1200.0, 800.0, 300.0], 0.0).astype(np.float32)
    affine = np.diag([-spacing, spacing, spacing, 1.0])
    affine[:3, 3] = np.array([0.0, -18.0, 18.0]) - affine[:3, :3] @ centre  # centred in the MNI box
    lesion = np.zeros(shape, np.uint8)
    lesion[18:22, 22:26, 18:22] = 1
    t1[lesion > 0] = 700.0
    paths = {}
    for name, array in (("t1", t1), ("lesion", lesion)):
        nib.save(nib.Nifti1Image(array, affine), folder / f"{name}.nii.gz")
        paths[name] = str(folder / f"{name}.nii.gz")
    return paths


def _tiny_inference(tmp_path, *names, **overrides) -> ConfigParser:
    """inference.json (+ overrides) with a 2-filter, 2-level network on random weights and standardisation only,
    so a whole MNI-grid volume runs in seconds."""
    parser = _parser("inference.json", *names)
    options = {"denoise": False, "bias_correct": False, "register": False, "standardise": True}
    parser.update(
        {
            "output_dir": str(tmp_path / "out"),
            "checkpoint": str(tmp_path / "no_weights.pt"),
            "allow_random_weights": True,
            "network_def#filters": 2,
            "network_def#levels": 2,
            "preprocessing_options": {**parser["preprocessing_options"], **options, "check_modality": False},
            **overrides,
        }
    )
    return parser


def test_blind_inference_writes_a_binary_abnormal_wm_map_and_the_inpainted_t1_in_native_space(tmp_path):
    paths = _native_t1(tmp_path)
    _tiny_inference(tmp_path, datalist=[{"image": paths["t1"]}]).get_parsed_content("evaluator").run()
    reference = nib.load(paths["t1"])
    abnormal = nib.load(tmp_path / "out" / "t1_abnormal_wm.nii.gz")
    inpainted = nib.load(tmp_path / "out" / "t1_inpainted.nii.gz")
    for written in (abnormal, inpainted):
        assert written.shape == reference.shape
        np.testing.assert_allclose(written.affine, reference.affine, atol=1e-4)
    assert abnormal.get_data_dtype() == np.uint8 and set(np.unique(abnormal.get_fdata())) <= {0.0, 1.0}
    assert inpainted.get_data_dtype() == np.float32


def test_non_blind_inference_fills_only_the_lesion_in_native_space(tmp_path):
    paths = _native_t1(tmp_path)
    entry = {"image": paths["t1"], "label": paths["lesion"]}
    _tiny_inference(tmp_path, "inference_nonblind.json", datalist=[entry]).get_parsed_content(
        "evaluator"
    ).run()
    reference = nib.load(paths["t1"])
    filled = nib.load(tmp_path / "out" / "t1_filled.nii.gz")
    assert filled.shape == reference.shape
    np.testing.assert_allclose(filled.affine, reference.affine, atol=1e-4)
    lesion = np.asanyarray(nib.load(paths["lesion"]).dataobj) > 0
    np.testing.assert_array_equal(filled.get_fdata()[~lesion], reference.get_fdata()[~lesion])
    assert not np.allclose(filled.get_fdata()[lesion], reference.get_fdata()[lesion])  # the network's fill


def test_non_blind_inference_rejects_an_empty_mask_and_a_mask_on_another_grid(tmp_path):
    paths = _native_t1(tmp_path)
    nib.save(
        nib.Nifti1Image(np.zeros((40, 48, 40), np.uint8), nib.load(paths["t1"]).affine), tmp_path / "e.nii"
    )
    nib.save(nib.Nifti1Image(np.ones((20, 24, 20), np.uint8), np.diag([8.0, 8, 8, 1])), tmp_path / "g.nii")
    preprocessing = _tiny_inference(tmp_path, "inference_nonblind.json").get_parsed_content("preprocessing")
    for mask, reason in (("e.nii", "the mask is empty"), ("g.nii", "the mask's geometry differs from the image")):
        with pytest.raises(RuntimeError) as error:  # MONAI's Compose wraps the transform's ValueError
            preprocessing({"image": paths["t1"], "label": str(tmp_path / mask)})
        assert isinstance(error.value.__cause__, ValueError) and reason in str(error.value.__cause__)


def test_inference_threshold_is_the_one_chosen_on_validation():
    """inference.json (what MONAI Label runs) and evaluate.json apply the same abnormal-WM threshold."""
    inference = _parser("inference.json")
    evaluation = _parser("train.json", "blind.json", "evaluate.json")
    assert inference["abnormal_threshold"] == evaluation["abnormal_threshold"]
    assert "validation" in inference["abnormal_threshold_selection"]
    meta = json.loads((CONFIGS / "metadata.json").read_text(encoding="utf-8"))
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert pred["format"] == "segmentation"
    assert pred["channel_def"] == {"0": "background", "1": "abnormal white matter"}


def test_blind_pairs_take_the_lesion_free_truth_when_asked_and_need_no_stage_one(tmp_path):
    """target='healthy' pairs each lesioned volume with its own lesion-free volume (synthetic lesions on healthy
    scans); the paper's 'fill' needs the stage-1 checkpoint, which is absent here."""
    from common.data import MNI_AFFINE, MNI_SHAPE

    healthy = np.zeros(MNI_SHAPE, np.float32)  # on the MNI grid: all preprocessing off is then the identity
    healthy[60:120, 70:150, 60:120] = np.random.default_rng(0).uniform(0.5, 1.5, (60, 80, 60))
    lesion = np.zeros_like(healthy)
    lesion[85:95, 100:110, 85:95] = 1

    def write(name: str, array: np.ndarray) -> str:
        nib.save(nib.Nifti1Image(array, MNI_AFFINE), tmp_path / name)
        return str(tmp_path / name)

    entry = {
        "subject": "s1",
        "image": write("t1.nii.gz", healthy),
        "image_ms": write("t1_ms.nii.gz", healthy * (1 - 0.4 * lesion)),
        "label_ms": write("lesion.nii.gz", lesion),
    }
    options = {"denoise": False, "bias_correct": False, "register": False, "standardise": False,
               "check_modality": False}  # fmt: skip
    network = scripts.networks.SpaceToDepthUNet3D(filters=4, levels=2)
    missing = tmp_path / "no_stage1.pt"
    pairs = scripts.blind_data.build_blind_datalist([entry], network, missing, tmp_path, options, target="healthy")
    assert [p["image"] for p in pairs] == [entry["image_ms"], entry["image"]]
    assert pairs[0]["label"] == pairs[1]["label"]  # both paired with the lesion-free volume
    np.testing.assert_allclose(nib.load(pairs[0]["label"]).get_fdata(), healthy, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="train that stage first"):
        scripts.blind_data.build_blind_datalist([entry], network, missing, tmp_path, options, target="fill")
    with pytest.raises(ValueError, match="target must be"):
        scripts.blind_data.build_blind_datalist([entry], network, missing, tmp_path, options, target="truth")
