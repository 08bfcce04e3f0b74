"""The bundle harness: every folder of bundles/ is checked the way the model zoo and its users use it.

Parametrised over ``find_bundles()``, so a bundle added later is tested without editing this file. What a
bundle must provide is in docs/bundle_conventions.md.
"""

import json
import sys

import numpy as np
import pytest
import torch
from harness import (
    INFERENCE_IDS,
    OVERRIDE_CONFIGS,
    PAPER_WIDTH_OVERRIDE,
    REQUIRED_FILES,
    SCHEMA,
    TRAIN_IDS,
    config_list,
    find_bundles,
    random_weights_overrides,
    run_bundle,
    spatial_geometry,
    state_dict_shapes,
    tensorboard_tags,
    write_dicom_series,
)
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from common.engines import read_state_dict
from common.zoo import MAX_FILE_BYTES, ZOO_REQUIRED_FILES, zoo_problems

BUNDLES = find_bundles()
bundle_params = pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])


def parser_for(bundle, *names, **overrides):
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / n) for n in names])
    parser.update({"bundle_root": str(bundle), **overrides})
    return parser


def metadata(bundle):
    return json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))


@bundle_params
def test_layout(bundle):
    missing = [f for f in REQUIRED_FILES if not (bundle / f).is_file()]
    assert not missing, f"{bundle.name} lacks {missing}"


@bundle_params
@pytest.mark.parametrize("override", [None, *OVERRIDE_CONFIGS])
def test_train_configs_parse_and_define_the_zoo_ids(bundle, override):
    names = ["train.json"] + ([override] if override else [])
    parser = parser_for(bundle, *names)
    parser.parse()
    missing = [i for i in TRAIN_IDS if i not in parser]
    assert not missing, f"{names} lacks ids {missing}"


@bundle_params
def test_inference_config_parses_and_defines_the_zoo_ids(bundle):
    parser = parser_for(bundle, "inference.json")
    parser.parse()
    missing = [i for i in INFERENCE_IDS if i not in parser]
    assert not missing, f"inference.json lacks ids {missing}"


@bundle_params
def test_metadata_passes_the_zoo_schema_offline(bundle):
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(SCHEMA))
    meta = metadata(bundle)
    assert meta["version"] in meta["changelog"]
    import monai

    assert meta["monai_version"] == monai.__version__
    assert meta["pytorch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert meta["numpy_version"] == np.__version__


@bundle_params
def test_zoo_required_files_and_weights(bundle):
    """The zoo's own checks: its required files (models/model.pt included), version in the changelog, every
    shipped file within 25 MB, weights loadable with weights_only=True."""
    missing = [f for f in ZOO_REQUIRED_FILES if not (bundle / f).is_file()]
    assert not missing, f"{bundle.name} lacks {missing} (demo weights: see docs/bundle_conventions.md)"
    assert (bundle / "models" / "model.pt").stat().st_size <= MAX_FILE_BYTES
    assert zoo_problems(bundle, SCHEMA) == []


@bundle_params
def test_shipped_weights_load_strictly_into_the_inference_network(bundle):
    checkpoint = bundle / "models" / "model.pt"
    assert checkpoint.is_file(), f"{bundle.name} ships no models/model.pt"
    network = parser_for(bundle, "inference.json").get_parsed_content("network_def")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state.keys() == network.state_dict().keys(), "models/model.pt must be a bare state dict"
    network.load_state_dict(read_state_dict(checkpoint), strict=True)


@bundle_params
def test_inference_architecture_is_the_demo_one_and_the_override_restores_the_papers(bundle):
    """inference.json builds the quick.json (demo-weights) network; inference_paper_width.json switches it back
    to train.json's, so weights trained at either scale load."""
    demo = shape_differences(state_dict_shapes(bundle, "inference.json"), state_dict_shapes(bundle, *QUICK))
    assert not demo, f"inference.json's network is not train.json+quick.json's: {demo}"
    assert (bundle / "configs" / PAPER_WIDTH_OVERRIDE).is_file(), f"{bundle.name} lacks {PAPER_WIDTH_OVERRIDE}"
    paper = state_dict_shapes(bundle, "inference.json", PAPER_WIDTH_OVERRIDE)
    paper = shape_differences(paper, state_dict_shapes(bundle, "train.json"))
    assert not paper, f"inference.json+{PAPER_WIDTH_OVERRIDE}'s network is not train.json's: {paper}"


QUICK = ("train.json", "quick.json")


def shape_differences(actual, expected):
    """How many keys differ between two {name: shape} maps, with the first few."""
    keys = [k for k in sorted(actual.keys() | expected.keys()) if actual.get(k) != expected.get(k)]
    examples = ", ".join(f"{k}: {actual.get(k)} vs {expected.get(k)}" for k in keys[:3])
    return f"{len(keys)} differ, e.g. {examples}" if keys else ""


@bundle_params
def test_network_matches_metadata(bundle):
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        device="cpu",
        bundle_root=str(bundle),
    )


def short_training(bundle, output_dir, configs, n_train, n_val):
    """`run training` arguments for one epoch on the first samples of the bundle's own datalists."""
    return [
        "run",
        "training",
        "--config_file",
        config_list(*(bundle / "configs" / c for c in configs)),
        "--bundle_root",
        str(bundle),
        "--output_dir",
        str(output_dir),
        "--train#trainer#max_epochs",
        "1",
        "--train#dataset#data",
        f"$@train#datalist[:{n_train}]",
        "--validate#dataset#data",
        f"$@validate#datalist[:{n_val}]",
    ]


@bundle_params
def test_training_runs_a_couple_of_iterations(bundle, tmp_path):
    run_bundle(short_training(bundle, tmp_path, ("train.json", "quick.json"), 2, 1), cwd=tmp_path)
    assert list(tmp_path.rglob("*.pt")), "training wrote no checkpoint"
    scalars, images = tensorboard_tags(tmp_path / "tensorboard")
    assert "train_loss" in scalars, f"no train_loss in TensorBoard scalars {sorted(scalars)}"
    assert {"val/image_0", "val/pred_0"} <= images, f"no validation panels in {sorted(images)}"


@bundle_params
def test_inference_reads_nifti_and_dicom_and_keeps_geometry(bundle, tmp_path):
    parser = parser_for(bundle, "inference.json")
    entry = dict(parser.get_parsed_content("datalist")[0])
    nifti = entry["image"]
    stem = nifti.split("/")[-1].removesuffix(".gz").removesuffix(".nii")
    dicom = write_dicom_series(nifti, tmp_path / "dicom" / f"dicom-{stem}")  # no prefix clash with the NIfTI
    override = tmp_path / "override.json"
    override.write_text(json.dumps({"datalist": [entry, {**entry, "image": str(dicom)}]}), encoding="utf-8")
    out = tmp_path / "out"
    configs = config_list(bundle / "configs" / "inference.json", override)
    run_bundle(
        ["run", "--config_file", configs, "--bundle_root", str(bundle), "--output_dir", str(out)]
        + random_weights_overrides(bundle),
        cwd=tmp_path,
    )
    for source, name in ((nifti, stem), (dicom, dicom.name)):
        outputs = sorted(out.rglob(f"{name}_*.nii*"))
        assert outputs, f"no output for {name} in {sorted(p.name for p in out.rglob('*'))}"
        in_shape, in_affine = spatial_geometry(source)
        out_shape, out_affine = spatial_geometry(outputs[0])
        assert out_shape[: len(in_shape)] == in_shape
        np.testing.assert_allclose(out_affine, in_affine, atol=1e-4)


@bundle_params
def test_torchscript_export(bundle, tmp_path):
    meta = metadata(bundle)
    support = meta.get("torchscript", {"supported": True})
    if not support["supported"]:
        assert support.get("reason"), "a bundle that cannot be scripted must say why"
        pytest.skip(f"{bundle.name}: not scriptable: {support['reason']}")
    parser = parser_for(bundle, "inference.json")
    network = parser.get_parsed_content("network_def")
    checkpoint = bundle / "models" / "model.pt"
    if not checkpoint.exists():
        checkpoint = tmp_path / "model.pt"
        torch.save(network.state_dict(), checkpoint)
    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(checkpoint),
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
    )
    network.load_state_dict(torch.load(checkpoint, weights_only=True))
    spec = meta["network_data_format"]["inputs"]["image"]
    shape = [1, spec["num_channels"]] + [s if isinstance(s, int) else 16 for s in spec["spatial_shape"]]
    sample = torch.rand(shape)
    with torch.no_grad():
        expected = network.eval()(sample)
        scripted = torch.jit.load(str(exported))(sample)
    torch.testing.assert_close(scripted, expected)


@pytest.mark.slow
@bundle_params
def test_multi_gpu_config_runs_under_torchrun_on_cpu(bundle, tmp_path):
    """Two processes, gloo backend, DistributedSampler: how a bundle's multi_gpu_train.json runs."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    configs = ("train.json", "quick.json", "multi_gpu_train.json")
    run_bundle(short_training(bundle, tmp_path, configs, 4, 2), cwd=tmp_path, launcher=launcher)
    assert list(tmp_path.rglob("*.pt"))
