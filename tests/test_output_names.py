"""Outputs never leave ``output_dir``: ``common.engines.RelativeOutputName`` with a symlinked data folder (a
``--dataset_dir`` or ``$MEDINPAINT_DATA`` that is a symlink), in unit and through a 2D bundle's inference."""

import json
import shutil

import pytest
import torch
from harness import REPO, find_bundles
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import MetaTensor
from monai.transforms import SaveImage, SaveImaged

from common.data import build_sample_data
from common.engines import RelativeOutputName

BUNDLE = REPO / "bundles" / "shape_aware_mask_inpainting"  # the cheapest 2D bundle at inference
# every inference config (with its overrides) of every bundle: blind-3D's non-blind variant has its own saver
INFERENCE_CONFIGS = [
    (bundle, names)
    for bundle in find_bundles()
    for names in (["inference.json"], ["inference.json", "inference_nonblind.json"])
    if all((bundle / "configs" / name).is_file() for name in names)
]


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def linked_data(tmp_path):
    """(real folder, symlink to it): the data cache and the ``dataset_dir`` a user passes."""
    real = tmp_path / "cache" / "cohort"
    (real / "sub-1" / "slices").mkdir(parents=True)
    (real / "sub-2" / "slices").mkdir(parents=True)
    link = tmp_path / "data"
    link.symlink_to(real, target_is_directory=True)
    return real, link


def save(path, out, data_root_dir):
    """Save a small image read from ``path`` as the 2D bundles' inference does."""
    image = MetaTensor(torch.zeros(2, 6, 5, 1))
    image.meta["filename_or_obj"] = str(path)
    names = RelativeOutputName(data_root_dir)
    SaveImage(
        out,
        "pred",
        separate_folder=False,
        data_root_dir=str(data_root_dir),
        output_name_formatter=names,
        print_log=False,
    )(image)


@pytest.mark.parametrize(
    "written_as, data_root_dir",
    [("link", "link"), ("real", "link"), ("link", "real"), ("real", "real")],
    ids=["link_under_link", "real_under_link", "link_under_real", "real_under_real"],
)
def test_outputs_stay_in_output_dir_whichever_side_of_the_symlink_the_paths_are(
    tmp_path, linked_data, written_as, data_root_dir
):
    """The input's path and the saver's ``data_root_dir`` may each be written through the symlink or resolved
    (MONAI's loader keeps paths as written; the old formatter resolved one side only and wrote the output into
    the data cache as ``<output_dir>/../../cache/cohort/sub-1/...``)."""
    folders = dict(zip(("real", "link"), linked_data))
    out = tmp_path / "out"
    for subject in ("sub-1", "sub-2"):
        save(folders[written_as] / subject / "slices" / "z050.nii.gz", out, folders[data_root_dir])
    assert files_under(out) == ["sub-1/slices/z050_pred.nii.gz", "sub-2/slices/z050_pred.nii.gz"]
    assert files_under(tmp_path / "cache") == []


def test_a_subject_folder_linked_from_elsewhere_keeps_its_place_and_outside_inputs_their_name(tmp_path):
    """A data folder made of links to subjects stored elsewhere keeps ``sub-3/...``; an input outside the data
    folder is written under its bare name, never with ``../``."""
    data, elsewhere, out = tmp_path / "data", tmp_path / "disk2" / "sub-3", tmp_path / "out"
    data.mkdir()
    elsewhere.mkdir(parents=True)
    (data / "sub-3").symlink_to(elsewhere, target_is_directory=True)
    save(data / "sub-3" / "z050.nii.gz", out, data)
    save(tmp_path / "own" / "scan.nii.gz", out, data)
    assert files_under(out) == ["scan_pred.nii.gz", "sub-3/z050_pred.nii.gz"]


def test_a_saver_without_data_root_dir_is_refused_rather_than_overwriting(tmp_path):
    image = MetaTensor(torch.zeros(2, 6, 5, 1))
    image.meta["filename_or_obj"] = str(tmp_path / "data" / "sub-1" / "z050.nii.gz")
    names = RelativeOutputName(tmp_path / "data")
    saver = SaveImage(
        tmp_path / "out", "pred", separate_folder=False, output_name_formatter=names, print_log=False
    )
    with pytest.raises(ValueError, match="^RelativeOutputName keeps sub-folders only through SaveImage"):
        saver(image)


def test_two_inputs_of_one_name_outside_the_data_folder_stop_instead_of_overwriting(tmp_path):
    """Outside the data folder only the bare name is left: the second ``t1.nii.gz`` from another folder is an
    error naming both files (the same input saved again, e.g. a second output key, is fine)."""
    data, out = tmp_path / "data", tmp_path / "out"
    first, second = tmp_path / "own" / "a" / "t1.nii.gz", tmp_path / "own" / "b" / "t1.nii.gz"
    names = RelativeOutputName(data)
    saver = SaveImage(
        out,
        "pred",
        separate_folder=False,
        data_root_dir=str(data),
        output_name_formatter=names,
        print_log=False,
    )
    for source in (first, first, second):
        image = MetaTensor(torch.zeros(2, 6, 5, 1))
        image.meta["filename_or_obj"] = str(source)
        if source is second:
            with pytest.raises(ValueError) as error:
                saver(image)
        else:
            saver(image)
    assert str(error.value) == (
        f"{second} and {first} would both be written as t1.nii.gz in {out}: they lie outside the data folder "
        f"{data}, so their sub-folders cannot be kept; put them under one folder and pass it as --dataset_dir"
    )
    assert files_under(out) == ["t1_pred.nii.gz"]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "bundle, configs", INFERENCE_CONFIGS, ids=[f"{b.name}-{'+'.join(n)}" for b, n in INFERENCE_CONFIGS]
)
def test_every_inference_saver_keeps_equal_names_of_different_subjects_apart(
    tmp_path, linked_data, bundle, configs
):
    """Each ``SaveImaged`` of each bundle's inference names ``sub-1/slices/z050.nii.gz`` and
    ``sub-2/slices/z050.nii.gz`` (under ``dataset_dir``, a symlink, read through it or resolved) as two files
    in ``output_dir``'s sub-folders (ipa_medgan and blind-3D wrote both as ``z050_<postfix>``, one over the
    other)."""
    real, link = linked_data
    out = tmp_path / "out"
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(bundle), "output_dir": str(out), "dataset_dir": str(link)})
    savers = [
        t.saver for t in parser.get_parsed_content("postprocessing").transforms if isinstance(t, SaveImaged)
    ]
    assert savers, f"{bundle.name} {configs} postprocessing writes nothing"
    for saver in savers:
        names = [
            saver.folder_layout.filename(**saver.fname_formatter({"filename_or_obj": str(path)}, saver))
            for path in (link / "sub-1/slices/z050.nii.gz", real / "sub-2/slices/z050.nii.gz")
        ]
        layout = saver.folder_layout
        assert names == [
            f"{out}/{subject}/slices/z050_{layout.postfix}{layout.ext}" for subject in ("sub-1", "sub-2")
        ]
    assert files_under(tmp_path / "cache") == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_inference_with_a_symlinked_dataset_dir_writes_into_output_dir_only(tmp_path):
    """shape_aware_mask_inpainting's own inference (in process) with ``dataset_dir`` a symlink to a copy of
    the sample data's test split: the output lands at
    ``<output_dir>/<subject>/slices/<name>_inpainted.nii.gz`` and the data folder is left exactly as it was."""
    cohort, real, link = build_sample_data(), tmp_path / "cache" / "cohort", tmp_path / "data"
    datalist = json.loads((cohort / "datalist_2d.json").read_text(encoding="utf-8"))
    for entry in datalist["test"]:
        for value in entry.values():
            if isinstance(value, str) and (cohort / value).is_file():
                (real / value).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cohort / value, real / value)
    shutil.copyfile(cohort / "datalist_2d.json", real / "datalist_2d.json")
    link.symlink_to(real, target_is_directory=True)
    before = files_under(real)

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    overrides = {  # the config's own datalist (an expression or a _target_), narrowed to its first entry
        "bundle_root": str(BUNDLE),
        "dataset_dir": str(link),
        "full_datalist": parser["datalist"],
        "datalist": "$@full_datalist[:1]",
    }
    parser.update(overrides)
    [entry] = parser.get_parsed_content("datalist")
    postfix = parser.get_parsed_content("output_postfix")
    source = entry["image"].removeprefix(str(link) + "/")
    assert source != entry["image"], "the datalist reads through the symlink"
    expected = source.removesuffix(".nii.gz") + f"_{postfix}.nii.gz"

    out = tmp_path / "out"
    config = str(BUNDLE / "configs" / "inference.json")
    workflow = ConfigWorkflow(config_file=config, workflow_type="infer", output_dir=str(out), **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    assert files_under(out) == [expected]
    assert files_under(real) == before, "inference wrote into the data folder"
