"""What MONAI Label's bundle app does with a bundle, emulated without installing ``monailabel``.

Mirrors ``monailabel/tasks/infer/bundle.py`` (``BundleInferTask`` + ``BasicInferTask``) and
``monailabel/tasks/train/bundle.py`` (``BundleTrainTask``) of Project-MONAI/MONAILabel:

Inference: reads ``configs/inference.json`` with ``bundle_root`` set; builds ``network_def`` and loads
``models/model.pt`` itself (``torch.load``, then ``checkpoint.get("model", checkpoint)``, strict); takes the first
input/output keys of ``metadata.json`` and the output ``channel_def`` (non-background entries) as its labels;
runs ``preprocessing``'s transforms one by one on ``{"image": <path>, ...request params}``, then
``inferer(data["image"][None], network)`` (no other inputs), stores ``outputs[0]`` as ``data["pred"]``, and runs
``postprocessing``'s transforms without ``SaveImaged`` (it writes ``pred`` itself). The ``device`` id is
overridden by the request.

Training: reads ``configs/train.json``; takes the raw ``train#handlers`` list and, when ``models/model.pt``
exists and no ``CheckpointLoader`` is there, prepends one loading it into ``$@network`` (strict=False); calls
``monai.bundle.run("run", init_id=None, final_id=None, ...)`` with overrides ``bundle_root``,
``train#trainer#max_epochs``, ``train#dataset#data``, ``device``, ``train#handlers`` and
``validate#dataset#data``.

Deviations, to stay CPU-cheap: training merges quick.json after train.json (MONAI Label reads train.json alone,
paper scale); the request/datastore records are the bundle's own datalist entries (MONAI Label's default
datastore gives ``{"image", "label"}`` only, so bundles needing more keys (a mask, a hint) need an app that
passes them as request params or a datastore that provides them); monailabel's ``LoadImageTensord`` wrapper of each
top-level ``LoadImaged`` is emulated only in that it reads every key (``KeyError`` for one the request lacks, whatever
``allow_missing_keys``), and its ``Restored`` post transform is not applied (the bundles' own postprocessing restores
the input geometry).
"""

import copy
import json
import shutil

import monai.bundle
import numpy as np
import pytest
import torch
from harness import find_bundles
from monai.bundle import ConfigParser
from monai.inferers import SimpleInferer
from monai.transforms import Compose, LoadImage, LoadImaged, SaveImaged, apply_transform

BUNDLES = find_bundles()
HEAVY = {"blind_lesion_inpainting_3d"}  # 3D: MNI preprocessing and a volume network, slow-marked
SLOW_TRAINING = HEAVY | {"ipa_medgan", "shape_aware_mask_inpainting"}  # > ~20 s for one epoch on 2 samples
SEGMENTATION = {"autoinpainting_tumor_segmentation", "blind_lesion_inpainting_3d"}
SAME_AS_BUNDLE_RUN = {"autoinpainting_tumor_segmentation"}  # MONAI Label's answer checked equal to the bundle's own


def per_bundle(slow=HEAVY):
    return pytest.mark.parametrize(
        "bundle", [pytest.param(b, id=b.name, marks=pytest.mark.slow if b.name in slow else ()) for b in BUNDLES]
    )


def first_io(bundle):
    """(input key, output key, output spec) as BundleInferTask reads them from metadata.json."""
    meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
    key_image, _ = next(iter(meta["network_data_format"]["inputs"].items()))
    key_pred, pred = next(iter(meta["network_data_format"]["outputs"].items()))
    return key_image, key_pred, pred


def transforms_of(parser, key):
    value = parser.get_parsed_content(key, instantiate=True)
    return list(value.transforms) if isinstance(value, Compose) else list(value)


def monailabel_infer(bundle, weights, request, device="cpu"):
    """BundleInferTask + BasicInferTask.__call__ up to the writer: returns the post-processed data dict."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(bundle)})
    parser.config.update({"device": device})
    network = copy.deepcopy(parser.get_parsed_content("network_def", instantiate=True)).to(device)
    checkpoint = torch.load(weights, map_location=device, weights_only=True)
    network.load_state_dict(checkpoint.get("model", checkpoint), strict=True)
    network.eval()
    data = dict(request)
    for transform in transforms_of(parser, "preprocessing"):
        missing = [k for k in transform.keys if k not in data] if isinstance(transform, LoadImaged) else []
        if missing:
            raise KeyError(f"MONAI Label's LoadImageTensord reads every key of {transform}: missing {missing}")
        data = apply_transform(transform, data)
    inferer = parser.get_parsed_content("inferer", instantiate=True) if "inferer" in parser else SimpleInferer()
    inputs = data["image"]
    inputs = (inputs if torch.is_tensor(inputs) else torch.from_numpy(inputs))[None].to(device)
    with torch.no_grad():
        outputs = inferer(inputs, network)
    data["pred"] = outputs[0]
    for transform in transforms_of(parser, "postprocessing"):
        if not isinstance(transform, SaveImaged):
            data = apply_transform(transform, data)
    return data


def weights_for(bundle, tmp_path, *configs):
    """The shipped models/model.pt, or (until it is shipped) a state dict of the configs' network_def."""
    shipped = bundle / "models" / "model.pt"
    if shipped.is_file():
        return shipped
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / c) for c in configs])
    parser.update({"bundle_root": str(bundle)})
    state = parser.get_parsed_content("network_def").state_dict()
    stand_in = tmp_path / "stand_in_model.pt"
    torch.save(state, stand_in)
    return stand_in


def first_request(bundle):
    """A MONAI Label request: the image path plus the extra inputs the bundle's first inference entry has."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.update({"bundle_root": str(bundle)})
    return dict(parser.get_parsed_content("datalist")[0])


@per_bundle()
def test_monailabel_inference_path_gives_the_metadata_pred(bundle, tmp_path):
    key_image, key_pred, pred_spec = first_io(bundle)
    assert (key_image, key_pred) == ("image", "pred"), "MONAI Label reads data['image'] and writes data['pred']"
    request = first_request(bundle)
    data = monailabel_infer(bundle, weights_for(bundle, tmp_path, "inference.json"), request)
    pred = torch.as_tensor(data["pred"]).detach().cpu()
    assert pred.shape[0] == pred_spec["num_channels"]
    source = LoadImage(image_only=True)(request["image"])
    spatial = tuple(s for s in source.shape if s != 1)
    assert tuple(s for s in pred.shape[1:] if s != 1) == spatial, "pred must come back in the input's geometry"
    assert torch.isfinite(pred).all()
    labels = {int(k): v for k, v in pred_spec.get("channel_def", {}).items()}
    if bundle.name in SEGMENTATION:
        assert set(labels) >= {0, 1} and labels[0].lower() == "background", "a segmentation needs a channel_def"
        values = set(np.unique(pred.numpy()).tolist())
        assert values <= set(labels), f"pred is not a label map of {labels}: values {sorted(values)[:10]}"
    else:
        assert len(torch.unique(pred)) > len(labels) + 1, "an inpainter's pred is an image, not a label map"


@pytest.mark.parametrize("bundle", [b for b in BUNDLES if b.name in SAME_AS_BUNDLE_RUN], ids=lambda b: b.name)
@pytest.mark.parametrize("image_only", [False, True], ids=["datalist_entry", "image_only"])
def test_monailabel_answer_equals_the_bundle_inference(bundle, image_only, tmp_path):
    """On one sample, MONAI Label's pred equals the file the bundle's own inference.json run writes for the same
    request: the datalist entry, and MONAI Label's default ``{"image"}``-only request (the bundle's fallbacks)."""
    request = first_request(bundle)
    if image_only:
        request = {"image": request["image"]}
    weights = weights_for(bundle, tmp_path, "inference.json")
    answer = torch.as_tensor(monailabel_infer(bundle, weights, request)["pred"]).detach().cpu().numpy()
    _, key_pred, _ = first_io(bundle)
    monai.bundle.run(
        run_id="run",
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        output_dir=str(tmp_path / "bundle_run"),
        datalist=[request],
        checkpoint=str(weights),
        device=torch.device("cpu"),
    )
    (written,) = (tmp_path / "bundle_run").rglob(f"*_{key_pred}.nii.gz")
    expected = LoadImage(image_only=True)(str(written)).numpy()
    assert answer.size == expected.size and len(np.unique(expected)) > 1, "compare a non-trivial answer"
    np.testing.assert_allclose(answer.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


@per_bundle(slow=SLOW_TRAINING)
def test_monailabel_train_path_runs_one_epoch(bundle, tmp_path):
    """BundleTrainTask.__call__ + run_single_gpu on a copy of the bundle (training writes into bundle_root)."""
    copy_root = tmp_path / bundle.name
    shutil.copytree(bundle, copy_root, ignore=shutil.ignore_patterns("__pycache__", "eval", "runs"))
    configs = [str(copy_root / "configs" / c) for c in ("train.json", "quick.json")]
    parser = ConfigParser()
    parser.read_config(configs)
    parser.config.update({"bundle_root": str(copy_root)})
    model_pytorch = copy_root / "models" / "model.pt"
    if not model_pytorch.is_file():
        shutil.copy(weights_for(copy_root, tmp_path, "train.json", "quick.json"), model_pytorch)
    train_handlers = parser.get("train#handlers", [])
    if not [h for h in train_handlers if h.get("_target_") == "CheckpointLoader"]:
        loader = {"_target_": "CheckpointLoader", "load_path": str(model_pytorch), "load_dict": {"model": "$@network"}}
        train_handlers.insert(0, {**loader, "strict": False})
    train = parser.get_parsed_content("train#datalist")[:2]
    validate = parser.get_parsed_content("validate#datalist")[:1]
    before = {p.resolve() for p in copy_root.rglob("*.pt")}
    overrides = {
        "bundle_root": str(copy_root),
        "train#trainer#max_epochs": 1,
        "train#dataset#data": train,
        "device": torch.device("cpu"),
        "train#handlers": train_handlers,
        "validate#dataset#data": validate,
    }
    monai.bundle.run(
        run_id="run",
        init_id=None,
        final_id=None,
        meta_file=str(copy_root / "configs" / "metadata.json"),
        config_file=configs,
        **overrides,
    )
    written = {p.resolve() for p in copy_root.rglob("*.pt")} - before
    assert written, "MONAI Label's training run wrote no checkpoint"
