"""Object-removal evaluation: objects scaled to a mask ratio, eroded/dilated masks, binned metric tables."""

import importlib
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from harness import config_list, run_bundle
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.networks.nets import BasicUNet
from monai.transforms import Compose, SaveImaged
from scipy import ndimage

from common.bundle_scripts import load_bundle_scripts
from common.masking import inpainting_target
from common.metrics import MAEMetric, PSNRMetric

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "mask_optimized_object_removal"
scripts = load_bundle_scripts(BUNDLE)
bundle_data, bundle_eval = scripts.data, scripts.evaluate
reproduce_tables = importlib.import_module(f"{scripts.__name__}.reproduce_tables")
EdgeConnectInpainter = scripts.networks.EdgeConnectInpainter
ObjectRemovalPipeline = scripts.networks.ObjectRemovalPipeline
MaskRatioBinnedMetric = scripts.binning.MaskRatioBinnedMetric
RandCopyPasted = scripts.copy_paste.RandCopyPasted


def object_pair(size=64, box=(10, 10, 4, 4), value=0.8):
    """A zero target and a source holding a (top, left, height, width) box of ``value`` with its mask."""
    top, left, h, w = box
    source = np.zeros((1, size, size), np.float32)
    mask = np.zeros((1, size, size), np.float32)
    source[0, top : top + h, left : left + w] = value
    mask[0, top : top + h, left : left + w] = 1
    return {"target": np.zeros((1, size, size), np.float32), "source": source, "source_mask": mask}


# --- copy-paste: objects scaled to a share of the target --------------------------------------------------


@pytest.mark.parametrize("ratio", [0.05, 0.25])
def test_area_ratio_range_scales_the_object_to_that_share_of_the_target(ratio):
    transform = RandCopyPasted(min_object_pixels=1, area_ratio_range=(ratio, ratio))
    out = transform(object_pair())
    # a 4x4 square scaled by sqrt(ratio * 64 * 64 / 16): side 4 * that, within one pixel
    side = 4 * math.sqrt(ratio * 64 * 64 / 16)
    assert (side - 1) ** 2 <= float(out["mask"].sum()) <= (side + 1) ** 2
    # the object keeps its intensity away from its bilinear rim (half a source pixel: scale / 2 px wide)
    rim = int(side / 4 / 2) + 1
    interior = ndimage.binary_erosion(np.asarray(out["mask"])[0] > 0, iterations=rim)
    assert interior.sum() > 0
    np.testing.assert_allclose(np.asarray(out["image"])[0][interior], 0.8, atol=1e-6)
    assert float(np.abs(np.asarray(out["clean"])).sum()) == 0


def test_area_ratio_range_is_seeded_and_spreads_over_the_range():
    transform = RandCopyPasted(min_object_pixels=1, area_ratio_range=(0.01, 0.4))
    ratios = []
    for seed in range(12):
        transform.set_random_state(seed)
        first = float(transform(object_pair())["mask"].mean())
        transform.set_random_state(seed)
        assert float(transform(object_pair())["mask"].mean()) == first
        ratios.append(first)
    assert min(ratios) < 0.1 and max(ratios) > 0.25


def test_area_ratio_range_caps_an_elongated_object_to_fit_the_target():
    data = object_pair(size=32, box=(2, 2, 1, 16))  # 1x16 line: a 50 % area would be a 4x64 box
    out = RandCopyPasted(min_object_pixels=1, area_ratio_range=(0.5, 0.5))(data)
    rows, cols = np.nonzero(np.asarray(out["mask"])[0])
    assert cols.max() - cols.min() + 1 <= 30 and float(out["mask"].mean()) < 0.5


@pytest.mark.parametrize("bad", [(0.2, 0.1), (0.0, 0.0), (0.1, 1.5), (0.1,)])
def test_area_ratio_range_rejects_bad_ranges(bad):
    with pytest.raises(ValueError, match="area_ratio_range"):
        RandCopyPasted(area_ratio_range=bad)


def test_copy_paste_pairs_ignore_sources_without_one_large_enough_object(tmp_path):
    """Two 10-pixel MS lesions sum to 20 >= 16 pixels but no single one can be cut: not a source."""

    def save(name, array):
        nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), tmp_path / name)
        return name

    entries = []
    for subject, lesion in (("a", [(2, 2), (20, 20)]), ("b", [(2, 2)]), ("c", [])):
        label = np.zeros((32, 32))
        for top, left in lesion:
            label[top : top + 2, left : left + (5 if subject == "a" else 8)] = 1
        save(f"{subject}_ms.nii.gz", label)
        save(f"{subject}.nii.gz", np.ones((32, 32)))
        entries.append({"subject": subject, "slice_z": 0, "image": f"{subject}.nii.gz",
                        "image_ms": f"{subject}.nii.gz", "label_ms": f"{subject}_ms.nii.gz",
                        "ms_pixels": int(label.sum()), "tumour_pixels": 0, "brain": f"{subject}.nii.gz"})  # fmt: skip
    (tmp_path / "datalist_2d.json").write_text(json.dumps({"test": entries}), encoding="utf-8")
    pairs = bundle_data.copy_paste_pairs(str(tmp_path), "test", seed=0)
    assert entries[0]["ms_pixels"] == 20  # subject a: 2 lesions of 10 px
    assert {p["source_subject"] for p in pairs} == {"b"}  # a's lesions are too small, c has none
    assert {p["subject"] for p in pairs} == {"a", "c"}


def test_copy_paste_pairs_limit_spans_the_list_and_small_brains_are_left_out(tmp_path):
    entries = []
    for k, subject in enumerate("abcde"):
        label = np.zeros((16, 16), np.float32)
        label[4:9, 4:9] = 1
        nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / f"{subject}_ms.nii.gz")
        nib.save(nib.Nifti1Image(np.ones((16, 16), np.float32), np.eye(4)), tmp_path / f"{subject}.nii.gz")
        entries.append({"subject": subject, "slice_z": 0, "image": f"{subject}.nii.gz", "brain": f"{subject}.nii.gz",
                        "image_ms": f"{subject}.nii.gz", "label_ms": f"{subject}_ms.nii.gz", "ms_pixels": 25,
                        "tumour_pixels": 0, "brain_pixels": 100 * k})  # fmt: skip
    (tmp_path / "datalist_2d.json").write_text(json.dumps({"test": entries}), encoding="utf-8")
    pairs = bundle_data.copy_paste_pairs(str(tmp_path), "test", seed=0)
    assert [p["subject"] for p in pairs] == list("abcde")
    spread = bundle_data.copy_paste_pairs(str(tmp_path), "test", seed=0, limit=3)
    assert [p["subject"] for p in spread] == ["a", "c", "e"]  # evenly spaced, not the first three
    assert spread[1] == pairs[2]  # the same pair and paste seed as without the limit
    large = bundle_data.copy_paste_pairs(str(tmp_path), "test", seed=0, min_brain_pixels=200)
    assert {p["subject"] for p in large} == {"c", "d", "e"} >= {p["source_subject"] for p in large}


# --- pipeline: eroded / dilated masks, the hint as mask ---------------------------------------------------


def tiny_pipeline(**kwargs):
    torch.manual_seed(0)
    segmenter = BasicUNet(spatial_dims=2, in_channels=1, out_channels=4, features=(4, 4, 8, 8, 16, 4))
    inpainter = EdgeConnectInpainter(1, 3, channels=4, residual_blocks=1)
    return ObjectRemovalPipeline(segmenter, inpainter, **kwargs).eval()


def square(size=32, lo=10, hi=16):
    mask = torch.zeros(1, 1, size, size)
    mask[..., lo:hi, lo:hi] = 1
    return mask


def test_negative_expand_erodes_the_chosen_segment():
    net = tiny_pipeline(expand=-1)
    mask = net.choose_mask(square(), square())  # the 6x6 segment, hinted by itself
    assert int(mask.sum()) == 16  # eroded by one pixel on every side: 4x4
    net.expand = -2
    assert int(net.choose_mask(square(), square()).sum()) == 4  # 2x2


def test_an_erosion_that_would_empty_the_mask_keeps_it_and_counts_a_fallback():
    net = tiny_pipeline(expand=-3)
    mask = net.choose_mask(square(), square())
    torch.testing.assert_close(mask, square())
    assert net.fallbacks == 1


def test_hint_mask_source_uses_the_hint_whatever_the_segmenter_finds():
    prob = square(lo=4, hi=20)  # the segmenter's segment: 16x16, covering the hint
    hint = square(lo=8, hi=12)
    net = tiny_pipeline()
    assert int(net.choose_mask(prob, hint).sum()) == 256
    net = tiny_pipeline(mask_source="hint", expand=1)
    # the 4x4 hint dilated by a cross: each side grows by one row of 4
    assert int(net.choose_mask(prob, hint).sum()) == 16 + 4 * 4
    x = torch.cat([torch.rand(1, 1, 32, 32), hint], dim=1)
    with torch.no_grad():
        out = net(x, details=True)
    assert int(out["mask"].sum()) == 32 and net.fallbacks == 0
    with pytest.raises(ValueError, match="mask_source"):
        tiny_pipeline(mask_source="clicks")


# --- binned metric tables ---------------------------------------------------------------------------------


def test_mask_ratio_binning():
    y = torch.rand(4, 1, 10, 10)
    masks = torch.zeros(4, 1, 10, 10)
    masks[0, 0, :1, :5] = 1  # 5 %
    masks[1, 0, :3, :5] = 1  # 15 %
    masks[2, 0, :2, :] = 1  # 20 % (bins are (lo, hi])
    masks[3, 0, :5, :7] = 1  # 35 %
    errors = torch.tensor([0.1, 0.2, 0.4, 0.3]).view(4, 1, 1, 1)
    binned = MaskRatioBinnedMetric(MAEMetric(roi="hole"))
    binned(y + errors, y, mask=masks)
    assert binned.aggregate().tolist() == pytest.approx([0.1, 0.3, float("nan"), 0.3], nan_ok=True, rel=1e-4)
    assert list(binned.as_dict()) == ["0-10%", "10-20%", "20-30%", "30-40%"]
    binned.reset()
    binned(y + errors, inpainting_target(y, masks))
    assert binned.aggregate()[0].item() == pytest.approx(0.1, rel=1e-4)
    with pytest.warns(UserWarning, match="outside"):
        big = MaskRatioBinnedMetric(MAEMetric())
        big(y, y, mask=torch.ones_like(masks))
        big.aggregate()


def labelled(error: float, hole_pixels: int, size: int = 20) -> dict:
    """One decollated engine output: a prediction off by ``error`` everywhere (PSNR = -20 log10(error))
    and the label ``{"image", "mask"}`` with a mask of ``hole_pixels`` pixels."""
    clean = torch.full((1, size, size), 0.5)
    mask = torch.zeros(1, size, size)
    mask.view(-1)[:hole_pixels] = 1
    return {"pred": clean + error, "label": {"image": clean, "mask": mask}}


def test_binned_writer_bins_by_the_true_mask_ratio_and_writes_json_and_markdown(tmp_path):
    writer = bundle_eval.BinnedMetricsWriter({"psnr": PSNRMetric(), "lpips": None}, str(tmp_path))
    engine = Engine(lambda engine, batch: batch)
    writer.attach(engine)
    # ratios 20/400 = 5 % (PSNR 20 dB), 100/400 = 25 % (40 dB and 20 dB -> mean 30 dB)
    batches = [[labelled(0.1, 20)], [labelled(0.01, 100), labelled(0.1, 100)]]
    engine.run(batches, max_epochs=1)
    results = json.loads((tmp_path / "binned_metrics.json").read_text(encoding="utf-8"))
    assert results["count"] == {"0-10%": 1, "10-20%": 0, "20-30%": 2, "30-40%": 0}
    assert results["mean"]["psnr"]["0-10%"] == pytest.approx(20.0, abs=1e-3)
    assert results["mean"]["psnr"]["20-30%"] == pytest.approx(30.0, abs=1e-3)
    assert math.isnan(results["mean"]["psnr"]["10-20%"])
    assert results["all"]["psnr"] == pytest.approx(80 / 3, abs=1e-3)
    assert [round(i["mask_ratio"], 3) for i in results["images"]] == [0.05, 0.25, 0.25]
    table = (tmp_path / "binned_metrics.md").read_text(encoding="utf-8")
    assert "| images | 1 | 0 | 2 | 0 | 3 |" in table
    assert "| psnr | 20.000 | – | 30.000 | – | 26.667 |" in table
    assert "| lpips | skipped" in table
    engine.run([[labelled(0.1, 60)]], max_epochs=1)  # a new run starts from scratch
    assert writer.results["count"]["10-20%"] == 1 and len(writer.results["images"]) == 1


def test_comparison_table_has_one_row_per_run(tmp_path):
    writer = bundle_eval.BinnedMetricsWriter({"psnr": PSNRMetric()}, str(tmp_path))
    engine = Engine(lambda engine, batch: batch)
    writer.attach(engine)
    engine.run([[labelled(0.1, 20)]], max_epochs=1)
    table = bundle_eval.comparison_table({"a": writer.results, "b": tmp_path / "binned_metrics.json"})
    lines = table.splitlines()
    assert lines[0].startswith("| psnr | 0-10% (n=1) | 10-20% (n=0)")
    assert lines[2] == lines[3].replace("| b |", "| a |") == "| a | 20.00 | – | – | – | 20.00 |"


def test_expand_sweep_runs_every_d_and_restores_the_network(tmp_path):
    net = tiny_pipeline()
    writer = bundle_eval.BinnedMetricsWriter({"psnr": PSNRMetric()}, str(tmp_path))
    # the fake evaluator's error grows with the dilation, as a worse mask would
    evaluator = Engine(lambda engine, batch: [labelled(0.01 * (net.expand + 3), 20)])
    writer.attach(evaluator)
    evaluator.run = lambda run=evaluator.run: run([0], max_epochs=1)
    runs = bundle_eval.expand_sweep(evaluator, net, writer, values=(-2, 0, 7), mask_source="hint")
    assert list(runs) == ["d = -2 px", "d = +0 px", "d = +7 px"]
    assert runs["d = -2 px"]["all"]["psnr"] == pytest.approx(40.0, abs=1e-3)  # error 0.01
    assert runs["d = +7 px"]["all"]["psnr"] == pytest.approx(20.0, abs=1e-3)  # error 0.1
    assert (tmp_path / "expand_-2.json").exists() and (tmp_path / "expand_+7.md").exists()
    assert "| d = +0 px |" in (tmp_path / "expand_sweep.md").read_text(encoding="utf-8")
    assert (net.expand, net.mask_source, writer.name) == (0, "segmenter", "binned_metrics")


def binned_results(psnr_per_bin, count=(1, 2, 0, 1)):
    """A BinnedMetricsWriter-like result with one PSNR per bin (SSIM = PSNR / 100)."""
    bins = ["0-10%", "10-20%", "20-30%", "30-40%"]
    mean = {"psnr": dict(zip(bins, psnr_per_bin)), "ssim": {b: v / 100 for b, v in zip(bins, psnr_per_bin)}}
    return {"bins": bins, "count": dict(zip(bins, count)), "mean": mean,
            "all": {"psnr": 20.0, "ssim": 0.2}, "images": [{}] * 5}  # fmt: skip


def test_comparison_table_puts_settings_in_rows_and_mask_ratio_bins_in_columns(tmp_path):
    runs = {}
    for name, values in {"a": [30.0, 25.5, float("nan"), 12.345], "b": [1.0, 2.0, 3.0, 4.0]}.items():
        runs[name] = tmp_path / f"{name}.json"
        runs[name].write_text(json.dumps(binned_results(values)), encoding="utf-8")
    lines = bundle_eval.comparison_table(runs, "psnr", notes={"paper": "n/a"}).splitlines()
    assert lines[0] == "| psnr | 0-10% (n=1) | 10-20% (n=2) | 20-30% (n=0) | 30-40% (n=1) | all (n=5) |"
    assert lines[2] == "| paper | n/a | | | | |" and lines[2].count("|") == lines[0].count("|")
    assert lines[3] == "| a | 30.00 | 25.50 | – | 12.35 | 20.00 |"
    assert (
        bundle_eval.comparison_table(runs, "ssim", 3).splitlines()[3]
        == "| b | 0.010 | 0.020 | 0.030 | 0.040 | 0.200 |"
    )


def test_reproduce_tables_stages_wire_the_ablations():
    out = Path("/o")
    stages = {
        name: (done, args)
        for name, done, args in reproduce_tables.stages(out, {"max_epochs": 1}, [0.01, 0.07], finetune=[5])
    }
    assert len({done for done, _ in stages.values()}) == len(stages)
    random_pretrain = stages["pretrain inpainters on random masks"][1]
    assert random_pretrain[random_pretrain.index("--inpainter_masks") + 1] == "random"
    e2e = stages["end to end, alpha_0.07"][1]
    assert e2e[e2e.index("--alpha") + 1] == "0.07" and e2e[e2e.index("--ckpt_dir") + 1] == str(out)
    assert e2e[-2:] == ["--max_epochs", "1"]
    no_mel = stages["end to end, no_expansion"][1]
    assert no_mel[no_mel.index("--loss_weights#expansion") + 1] == "0"
    evaluation = stages["evaluate table2_random_hint"][1]
    assert evaluation[evaluation.index("--pretrained_inpainter") + 1] == str(
        out / "random_masks" / "inpainter.pt"
    )
    assert evaluation[evaluation.index("--network_def#mask_source") + 1] == "hint"
    assert evaluation[evaluation.index("--eval_independent") + 1] == "true"
    finetune = stages["fine-tune random-mask inpainters on 5 pairs"][1]
    assert finetune[finetune.index("--init_inpainter") + 1] == str(out / "random_masks" / "inpainter.pt")
    assert finetune[finetune.index("--train_limit") + 1] == "5"
    assert stages["evaluate Table I expand sweep"][1][0] == "evaluate_expand_sweep"
    for name, (_, args) in stages.items():  # --data ixi (default): every stage on the IXI pairs
        configs = args[args.index("--config_file") + 1]
        assert "ixi_pairs.json" in configs and configs.endswith('evaluate.json"]') == name.startswith(
            ("evaluate", "Table")
        )
    sample = reproduce_tables.stages(out, {"max_epochs": 1}, [0.01], finetune=[5], data="sample")
    assert not any("ixi_pairs.json" in " ".join(args) for _, _, args in sample)


# --- inference.json: what MONAI Label feeds the network ---------------------------------------------------


def inference_parser():
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE)})
    return parser


def test_inference_preprocessing_puts_image_and_hint_in_image_and_postprocessing_restores_geometry(tmp_path):
    """MONAI Label calls ``network(data["image"])`` only: image + hint must be its channels (metadata: 2)."""
    image, hint = np.linspace(0, 1, 40 * 48, dtype=np.float32).reshape(40, 48), np.zeros((40, 48), np.float32)
    hint[10:15, 12:17] = 1
    for name, array in (("slice", image), ("slice_hint", hint)):
        nib.save(nib.Nifti1Image(array, np.diag([0.5, 0.7, 1.0, 1.0])), tmp_path / f"{name}.nii.gz")
    parser = inference_parser()
    data = parser.get_parsed_content("preprocessing")(
        {"image": str(tmp_path / "slice.nii.gz"), "hint": str(tmp_path / "slice_hint.nii.gz")}
    )
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert data["image"].shape == (meta["network_data_format"]["inputs"]["image"]["num_channels"], 64, 64)
    expected_hint = torch.zeros(64, 64)
    expected_hint[16:24, 16:23] = 1  # rows 10-15 and columns 12-17 scaled by 64/40 and 64/48, any overlap kept
    torch.testing.assert_close(data["image"][1].as_tensor(), expected_hint)
    assert data["image"][0].min() == 0 and data["image"][0].max() == 1
    data["pred"] = data["image"][:1].clone()
    for transform in parser.get_parsed_content("postprocessing").transforms:
        if not isinstance(transform, SaveImaged):
            data = transform(data)
    assert data["pred"].shape == (1, 40, 48), "pred goes back to the input's size"
    assert data["pred"].meta["filename_or_obj"].endswith("slice.nii.gz"), "outputs are named after the image"


def test_inference_preprocessing_without_a_hint_says_what_to_give(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), tmp_path / "slice.nii.gz")
    preprocessing = inference_parser().get_parsed_content("preprocessing")
    for request in ({"image": str(tmp_path / "slice.nii.gz")}, {"image": str(tmp_path / "slice.nii.gz"), "hint": ""}):
        with pytest.raises(RuntimeError) as error:
            preprocessing(request)
        assert isinstance(error.value.__cause__, ValueError) and "hint" in str(error.value.__cause__)


# --- evaluate.json: metrics from `checkpoint`, without the training setup ----------------------------------


def test_evaluation_needs_neither_the_training_loss_nor_its_folders(tmp_path):
    """evaluate.json scores the shipped weights without building a trainer: no training loss, no
    ``tensorboard/`` and no checkpoint folder."""
    configs = config_list(*(BUNDLE / "configs" / c for c in ("train.json", "quick.json", "evaluate.json")))
    output = tmp_path / "eval"
    run_bundle(
        ["run", "evaluating", "--config_file", configs, "--bundle_root", str(BUNDLE), "--output_dir", str(output),
         "--checkpoint", str(BUNDLE / "models" / "model.pt"), "--test_limit", "2"],
        cwd=tmp_path,
    )  # fmt: skip
    results = json.loads((output / "binned_metrics.json").read_text(encoding="utf-8"))
    assert len(results["images"]) == 2 and {"psnr", "ssim", "mae", "psnr_hole"} <= set(results["all"])
    assert (output / "metrics.csv").is_file()
    assert not [p for p in tmp_path.rglob("*") if p.is_dir() and p.name in ("tensorboard", "models")]


@pytest.mark.skipif(
    not (__import__("common.data.ixi", fromlist=["x"]).default_ixi_dir() / "t1").is_dir(),
    reason="IXI T1 set not found (../shared/data/ixi_t1_2mm or MEDINPAINT_IXI_DIR; CI has it)",
)
def test_ixi_pairs_paste_tumours_into_real_slices_kept_square_and_split_by_subject():
    from common.data.ixi import fixed_split

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / c) for c in ("train.json", "quick.json", "ixi_pairs.json")])
    parser.update({"bundle_root": str(BUNDLE)})
    train, selection = parser.get_parsed_content("train#datalist"), parser.get_parsed_content("validate#datalist")
    parser.read_config([str(BUNDLE / "configs" / c) for c in ("train.json", "ixi_pairs.json", "evaluate.json")])
    parser.update({"bundle_root": str(BUNDLE)})
    test = parser.get_parsed_content("validate#datalist")
    subjects = [{p["subject"] for p in pairs} | {p["source_subject"] for p in pairs} for pairs in (train, selection)]
    assert not subjects[0] & subjects[1] and subjects[0] | subjects[1] <= set(fixed_split()["training"])
    assert {p["subject"] for p in test} | {p["source_subject"] for p in test} <= set(fixed_split()["validation"])
    assert len(train) == 16  # quick.json's train_limit
    entry = parser.get_parsed_content("preprocessing")(test[0])
    assert entry["image"].shape == entry["clean"].shape == (1, 256, 256)  # train.json's spatial_size
    loaded = Compose(parser.get_parsed_content("preprocessing#transforms")[:3])(test[0])
    assert loaded["target"].shape == loaded["region"].shape == (1, 120, 120)  # padded square: 90x120 keeps its aspect
    assert int(loaded["region"].sum()) >= 3000  # ixi_pairs.json's min_brain_pixels


class _FixedMaskPipeline(torch.nn.Module):
    """Chooses the true mask dilated to 2x its area (rows 2-5 for a rows 2-3 object) and fills it with ``fill``."""

    def __init__(self):
        super().__init__()
        self.fill = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, x, details=False):
        selected = torch.zeros_like(x[:, 1:])
        selected[..., 2:6, 2:6] = 1
        pred = x[:, :1] * (1 - selected) + self.fill * selected
        return {"pred": pred, "selected": selected} if details else pred


def test_mask_diagnostics_scores_the_chosen_mask_against_the_object_and_the_object_left_in(tmp_path):
    clean = torch.zeros(1, 8, 8)
    image, mask = clean.clone(), torch.zeros(1, 8, 8)
    image[0, 2:4, 2:6], mask[0, 2:4, 2:6] = 0.5, 1  # an 8-pixel object of 0.5 on a black slice
    model = _FixedMaskPipeline()
    torch.save({"fill": torch.tensor(0.25)}, tmp_path / "fill.pt")
    path = bundle_eval.mask_diagnostics(model, {"fill 0.25": str(tmp_path / "fill.pt")},
                                        [{"image": image, "clean": clean, "mask": mask}], str(tmp_path))  # fmt: skip
    rows = json.loads((tmp_path / "mask_diagnostics.json").read_text(encoding="utf-8"))["rows"]
    assert rows["object left in"]["psnr"] == pytest.approx(10 * math.log10(64 / (8 * 0.25)))  # 8 px off by 0.5
    # 16 chosen pixels filled with 0.25 where the truth is 0: MSE = 16 * 0.0625 / 64
    assert rows["fill 0.25"] == pytest.approx(
        {"psnr": 10 * math.log10(64 / (16 * 0.0625)), "recall": 1.0, "precision": 0.5, "area": 2.0, "missed": 0.0}
    )
    assert "| fill 0.25 | 18.06 | 1.00 | 0.50 | 2.00 | 0.00 |" in path.read_text(encoding="utf-8")


def test_stage_times_count_overlapping_seeds_once_and_sum_their_work(tmp_path):
    for seed, stages in {0: {"a": (10.0, 110.0), "b": (20.0, 130.0)}, 1: {"a": (30.0, 125.0), "c": (5.0, 500.0)}}.items():
        (tmp_path / f"seed{seed}").mkdir()
        records = {name: {"wall_s": wall, "end": end} for name, (wall, end) in stages.items()}
        (tmp_path / f"seed{seed}" / "stage_wall_s.json").write_text(json.dumps(records), encoding="utf-8")
    # intervals [100, 110], [110, 130], [95, 125], [495, 500]: union 35 + 5 s; work 65 s
    assert reproduce_tables.stage_times([tmp_path / "seed0", tmp_path / "seed1"]) == (pytest.approx(40.0), 65.0)
