"""Bundle `blind_lesion_inpainting_3d` on real IXI T1 (``configs/ixi.json``, issues #17/#18): the lesioned IXI
datalist keeps each subject's split, and both training stages read the training subjects only. No training."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

import common.data
from common.bundle_scripts import load_bundle_scripts
from common.data import MNI_AFFINE, MNI_SHAPE
from common.data.ixi import IXI_DIR_ENV, default_ixi_dir, find_subjects, fixed_split

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "blind_lesion_inpainting_3d"
scripts = load_bundle_scripts(BUNDLE)
needs_ixi = pytest.mark.skipif(
    not (default_ixi_dir() / "t1").is_dir(),
    reason=f"IXI T1 set not found at {default_ixi_dir()} (set {IXI_DIR_ENV}; CI has it)",
)
NO_PREPROCESSING = {
    "denoise": False,
    "bias_correct": False,
    "register": False,
    "standardise": False,
    "check_modality": False,
}


def _save(array: np.ndarray, path: Path) -> str:
    nib.save(nib.Nifti1Image(array, MNI_AFFINE), path)
    return str(path)


@pytest.mark.slow  # ~70 s: full MNI-grid volumes written, preprocessed and read back
def test_lesioned_ixi_keeps_the_split_and_darkens_only_the_bank_lesion_inside_wm(tmp_path):
    wm = np.zeros(MNI_SHAPE, bool)
    wm[60:120, 70:150, 60:120] = True
    t1 = np.where(wm, 1000.0, 600.0).astype(np.float32)
    bank_mask = np.zeros(MNI_SHAPE, np.uint8)
    bank_mask[100:130, 100:110, 90:100] = 1  # one third outside the WM
    bank = [_save(bank_mask, tmp_path / "lesion.nii.gz")]
    entries = {}
    for subject in ("IXI001-A", "IXI999-B"):
        folder = tmp_path / subject
        folder.mkdir()
        entries[subject] = {
            "subject": subject,
            "image": _save(t1, folder / "t1.nii.gz"),
            "brain": _save(np.ones(MNI_SHAPE, np.uint8), folder / "brain.nii.gz"),
            "wm": _save(wm.astype(np.uint8), folder / "wm.nii.gz"),
        }
    folder = scripts.ixi_lesions.lesioned_ixi_dir(
        [entries["IXI001-A"]], [entries["IXI999-B"]], bank, NO_PREPROCESSING, seed=0, root=tmp_path / "cache"
    )
    datalist = json.loads((Path(folder) / "datalist_3d.json").read_text())
    assert [e["subject"] for e in datalist["training"]] == ["IXI001-A"]
    assert [e["subject"] for e in datalist["validation"]] == ["IXI999-B"]
    entry = datalist["validation"][0]
    image, image_ms = (np.asarray(nib.load(entry[k]).dataobj) for k in ("image", "image_ms"))
    lesion = np.asarray(nib.load(entry["label_ms"]).dataobj) > 0
    np.testing.assert_array_equal(lesion, (bank_mask > 0) & wm)
    np.testing.assert_array_equal(image_ms[~lesion], image[~lesion])  # nothing changes outside the lesion
    ratio = image_ms[lesion] / image[lesion]
    low, high = scripts.ixi_lesions.LESION_RATIO
    assert (
        low <= ratio.min() < high and ratio.max() < 1.0
    )  # darker: the cohort's ratio inside, softer at the edge
    assert np.isclose(image_ms[110, 105, 95] / 1000.0, ratio.min())  # the lesion's core holds the drawn ratio
    again = scripts.ixi_lesions.draw_lesion("IXI999-B", wm, bank, seed=0)
    assert np.isclose(again[1], ratio.min())  # seeded by subject id, not by list position


def _parser(overlays: tuple[str, ...], monkeypatch, folder: Path) -> ConfigParser:
    """train.json + overlays with the IXI MNI datalist read from the real folder's subjects (no registration) and
    the lesioned-data build replaced by a datalist of those entries in ``folder``."""
    subjects = find_subjects()

    def fake_ixi_datalist(kind, split):
        assert kind == "mni"
        return [
            {"subject": s.subject, "image": str(s.t1), "image_ms": "", "label_ms": ""}
            for s in subjects
            if s.split == split
        ]

    def fake_lesioned(training, validation, bank, preprocessing, seed):
        (folder / "datalist_3d.json").write_text(json.dumps({"training": training, "validation": validation}))
        return str(folder)

    monkeypatch.setattr(common.data, "load_ixi_datalist", fake_ixi_datalist)
    monkeypatch.setattr(scripts.ixi_lesions, "lesioned_ixi_dir", fake_lesioned)
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / name) for name in ("train.json", *overlays, "ixi.json")])
    parser.update({"bundle_root": str(BUNDLE), "lesion_bank": ["unused.nii.gz"]})
    return parser


@needs_ixi
@pytest.mark.parametrize("overlays", [(), ("blind.json",)], ids=["nonblind", "blind"])
def test_ixi_overlay_trains_on_training_subjects_only_and_preprocesses_as_inference(
    overlays, monkeypatch, tmp_path
):
    parser = _parser(overlays, monkeypatch, tmp_path)
    split = fixed_split()
    training = parser.get_parsed_content("training_subjects")
    trained_on = parser.get_parsed_content("train#datalist#datalist" if overlays else "train#datalist")
    for entries in (training, trained_on):
        assert {e["subject"] for e in entries} == set(split["training"])
        assert not {e["subject"] for e in entries} & set(split["validation"])
    assert {e["subject"] for e in parser.get_parsed_content("validate#datalist")} == set(split["validation"])
    inference = json.loads((BUNDLE / "configs" / "inference.json").read_text())["preprocessing_options"]
    # the volumes are registered already: the inference steps without registration, run once on the data
    assert parser.get_parsed_content("ixi_preprocessing") == {**inference, "register": False}
    options = parser.get_parsed_content("preprocessing_options")
    assert (
        not options["denoise"]
        and not options["bias_correct"]
        and not options["register"]
        and options["standardise"]
    )
    state = torch.load(BUNDLE / "models" / "model_nonblind.pt", map_location="cpu", weights_only=True)
    parser.get_parsed_content("network_def").load_state_dict(state)  # strict: the shipped width


def test_blind_crops_centre_on_the_lesion_and_keep_the_healthy_twin_random():
    """ixi.json's stage-2 crops: on a lesioned volume nearly every crop holds lesion voxels (where input and
    lesion-free target differ), although the lesion is 0.1 % of the volume; on a healthy twin (input == target)
    crops are spread uniformly. Parsed without the IXI data (only the crop ids are resolved)."""
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / n) for n in ("train.json", "blind.json", "ixi.json")])
    parser["bundle_root"] = str(BUNDLE)
    crops = Compose(parser.get_parsed_content("blind_crops"))
    size = parser.get_parsed_content("blind_crop_size")
    assert all(s % 16 == 0 for s in size)  # space-to-depth + 3 poolings need multiples of 16
    healthy = torch.rand(1, 192, 192, 192) + 0.5
    lesioned = healthy.clone()
    lesioned[:, 90:110, 110:130, 70:90] *= 0.6  # 8,000 voxels: 0.11 % of the volume
    crops.set_random_state(0)
    out = [c for _ in range(8) for c in crops({"image": lesioned, "label": healthy})]
    assert len(out) == 8 * parser.get_parsed_content("blind_crops_per_volume")
    assert all(tuple(c["image"].shape[1:]) == tuple(size) and "crop_weight" not in c for c in out)
    # weight mass: lesion 8,000 x ~0.4 = ~3,200 against floor 1e-4 x 129^3 valid centres = ~215: ~94 % of the
    # crops are centred in the lesion (a floor of 0.01 would give ~13 %, ~37 % counting crops that graze it)
    with_lesion = np.mean([bool((c["image"] != c["label"]).any()) for c in out])
    assert with_lesion >= 0.8, with_lesion
    twins = crops({"image": healthy, "label": healthy.clone()})
    centres = np.array([np.array(c["image"].meta["crop_center"], float) for c in twins])
    assert centres.std(axis=0).min() > 5  # not all on one spot


def test_ixi_overlay_weights_the_lesion_voxels_in_the_loss_and_the_paper_default_does_not():
    """train.json keeps the paper's plain MSE (difference_loss_weight 0: no weight channel); ixi.json appends the
    x100 lesion weight after the crops and the loss reads it. Parsed without the IXI data."""
    from monai.transforms import Compose

    def parsed(names):
        parser = ConfigParser()
        parser.read_config([str(BUNDLE / "configs" / n) for n in names])
        parser["bundle_root"] = str(BUNDLE)
        return parser

    paper = parsed(("train.json", "blind.json"))
    assert paper.get_parsed_content("difference_weight") == []
    assert not paper.get_parsed_content("loss").weight_channel
    ixi = parsed(("train.json", "blind.json", "ixi.json"))
    assert ixi.get_parsed_content("loss").weight_channel
    chain = Compose(ixi.get_parsed_content("blind_crops") + ixi.get_parsed_content("difference_weight"))
    chain.set_random_state(0)
    healthy = torch.rand(1, 96, 96, 96) + 0.5
    lesioned = healthy.clone()
    lesioned[:, 40:50, 40:50, 40:50] *= 0.6  # a difference of 0.2-0.6, above the 0.05 threshold everywhere
    crop = chain({"image": lesioned, "label": healthy})[0]
    label, weight = crop["label"][:1], crop["label"][1:]
    lesion = (crop["image"] != label).as_tensor()
    assert lesion.any()
    assert torch.equal(weight.as_tensor(), torch.where(lesion, 101.0, 1.0))
    net = ixi.get_parsed_content("network_def").train()
    loss = ixi.get_parsed_content("loss")(net(crop["image"][None].as_tensor()), crop["label"][None].as_tensor())
    assert torch.isfinite(loss)


def test_ixi_stage_one_holes_are_a_bank_lesion_plus_tumour_sized_holes_inside_the_brain(tmp_path):
    """ixi.json's stage-1 holes: the bank lesion and the large irregular holes, both cut to the brain, set to -1 in
    the input while the target keeps the truth; the large holes' coverage bounds hold (a fraction of the grid,
    before the brain cut). Parsed without the IXI data, on a small grid."""
    from monai.transforms import Compose

    shape = (64, 72, 64)
    lesion = np.zeros(shape, np.uint8)
    lesion[30:34, 30:34, 30:34] = 1  # 64 voxels, inside the brain below
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / n) for n in ("train.json", "ixi.json")])
    parser.update({"bundle_root": str(BUNDLE), "lesion_bank": [_save(lesion, tmp_path / "lesion.nii.gz")]})
    low, high = parser.get_parsed_content("large_hole_coverage")
    holes = Compose(parser.get_parsed_content("ixi_holes")[:-1])  # without the random flip
    truth = torch.rand(1, *shape) + 0.5
    brain = torch.zeros(1, *shape)
    brain[:, 8:56, 8:64, 8:56] = 1
    holes.set_random_state(0)
    for _ in range(4):
        out = holes({"image": truth.clone(), "brain": brain})
        hole = (out["mask"][0] > 0).numpy()
        assert np.array_equal(hole, (out["image"][0] == -1).numpy())
        assert np.array_equal(out["image"][0][~hole], truth[0][~hole])
        assert torch.equal(torch.as_tensor(out["label"]), truth)  # the target is the truth
        assert not (hole & (brain[0].numpy() == 0)).any()  # inside the brain only
        assert hole[30:34, 30:34, 30:34].all()  # the bank lesion
        large = int(hole.sum()) - 64
        assert 0 < large <= high * np.prod(shape) + 64, large
