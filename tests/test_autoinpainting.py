"""Autoinpainting search: circle scoring, top-k union, dilation choice, small-component rule, batching, inferer;
the bundle's evaluation route."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import config_list, run_bundle
from monai.data import MetaTensor

from common.bundle_scripts import load_bundle_scripts
from common.networks import GatedUNet

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "autoinpainting_tumor_segmentation"
scripts = load_bundle_scripts(BUNDLE)
autoinpainting = scripts.autoinpainting

SIZE = 96


pytestmark = pytest.mark.usefixtures("one_thread")


def disc(centre, radius, size=SIZE):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2).astype(np.float32)


class Oracle(torch.nn.Module):
    """A perfect 'healthy' inpainter: always returns the known healthy image."""

    def __init__(self, healthy):
        super().__init__()
        self.healthy = healthy
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.healthy.expand(x.shape[0], *self.healthy.shape)


@pytest.fixture
def scene():
    healthy = torch.full((1, SIZE, SIZE), 0.3)
    tumour = torch.from_numpy(disc((40, 50), 9))[None]
    image = healthy + 0.5 * tumour
    ooi = torch.from_numpy(disc((48, 48), 40))
    return healthy, image, tumour, ooi


def test_circles_crossing_the_organ_edge_void_only_organ_pixels():
    """A bright skull ring just outside a brain-disc OOI, healthy uniform brain, a faint tumour inside: an
    inpainter that paints 'healthy brain' everywhere would turn any voided skull pixel into a huge residual. The
    circles, the chosen mask and so the residual stay inside the OOI, and the tumour is what is found."""
    brain = torch.from_numpy(disc((48, 48), 30))
    skull = torch.from_numpy(disc((48, 48), 36)) - brain
    tumour = torch.from_numpy(disc((40, 55), 7))[None]
    healthy = 0.3 * brain[None] + 1.0 * skull[None]
    image = healthy + 0.3 * tumour
    result = autoinpainting.AutoInpainter(radius=12, step=6, min_tumour_radius=0).inpaint_slice(
        Oracle(torch.full((1, SIZE, SIZE), 0.3)), image, brain
    )
    assert not (result.circles & ~brain.numpy().astype(bool)[None]).any()
    assert not (result.mask[0].bool() & ~brain.bool()).any()
    assert float(result.residual[0][skull.bool()].abs().max()) == 0.0
    found = result.mask[0].bool()
    assert (found & tumour[0].bool()).sum() >= 0.9 * tumour.sum()


def test_oracle_inpainter_segments_the_tumour(scene):
    healthy, image, tumour, ooi = scene
    search = autoinpainting.AutoInpainter(radius=12, step=6, batch_size=16)
    result = search.inpaint_slice(Oracle(healthy), image, ooi)
    assert not result.unchanged
    # every kept circle overlaps the tumour, and the best one contains its centre
    best = result.circles[result.top[0]]
    assert best[40, 50]
    assert all((result.circles[k] & (tumour[0].numpy() > 0)).any() for k in result.top)
    # the composite equals the input outside the chosen mask and the healthy image inside it
    inside = result.mask.bool()
    torch.testing.assert_close(result.inpainted[~inside], image[~inside])
    torch.testing.assert_close(result.inpainted[inside], healthy[inside])
    # the chosen mask covers the tumour, so the residual is exactly the tumour contrast
    segmentation = autoinpainting.segment_residual(
        autoinpainting.residual_volume(image, result.inpainted), 0.1
    )
    assert torch.equal(segmentation, tumour)


def test_growth_rule_keeps_the_larger_mask_only_while_the_residual_grows():
    search = autoinpainting.AutoInpainter(growth_tolerance=0.05)
    assert search.choose([10, 20, 20.5, 30]) == 1  # 20.5 <= 1.05 * 20: stop
    assert search.choose([10, 10.4, 30]) == 0  # the first dilation adds < 5 %
    assert search.choose([1, 2, 3, 4, 5, 6]) == 5


@pytest.mark.parametrize(
    "sums, inpainted",
    [([1, 2, 2.05, 3, 4, 5], 3), ([1, 1.01, 5, 9, 9, 9], 3), ([1, 2, 4, 8, 8.1, 1], 6), ([1, 2, 4, 8, 16, 32], 6)],
)
def test_candidates_after_the_settled_choice_are_not_inpainted(sums, inpainted):
    """Candidates are inpainted half per pass until the growth rule has stopped: the choice is the one over
    all six residual sums, and only the passes needed to settle it are run."""
    search = autoinpainting.AutoInpainter()
    image = torch.zeros(1, 4, 4)
    candidates = torch.arange(6.0)[:, None, None, None].expand(-1, 1, 4, 4)  # candidate k holds the value k
    passes = []

    def fake_inpaint(network, image, holes, baseline=None):  # residual sum of candidate k: sums[k]
        passes.append(len(holes))
        return torch.stack([image + sums[int(h.flatten()[0])] / image.numel() for h in holes])

    search.inpaint = fake_inpaint
    images, residuals = search.settled_candidates(None, image, candidates)
    assert len(residuals) == len(images) == inpainted and sum(passes) == inpainted and max(passes) == 3
    np.testing.assert_allclose(residuals, sums[:inpainted], rtol=1e-6)
    assert search.choose(residuals) == search.choose(sums)


def test_dilations_are_squares_of_the_configured_widths():
    search = autoinpainting.AutoInpainter(dilation_widths=(3, 7))
    point = torch.zeros(1, 1, 21, 21)
    point[..., 10, 10] = 1
    stack = search.dilate(point)
    assert stack.shape == (3, 1, 21, 21)
    assert [int(s.sum()) for s in stack] == [1, 9, 49]
    assert torch.equal(stack[2, 0, 7:14, 7:14], torch.ones(7, 7))


def test_residual_smaller_than_min_tumour_disc_returns_the_slice_unchanged(scene):
    healthy, _, _, ooi = scene
    small = torch.from_numpy(disc((40, 50), 3))[None]  # area 29 < pi * 6^2 = 113
    image = healthy + 0.5 * small
    result = autoinpainting.AutoInpainter(radius=12, step=6).inpaint_slice(Oracle(healthy), image, ooi)
    assert small.sum() < math.pi * 36
    assert result.unchanged
    assert torch.equal(result.inpainted, image) and result.residual.sum() == 0 and result.mask.sum() == 0
    # with the check disabled, the same slice is segmented
    assert (
        not autoinpainting.AutoInpainter(radius=12, step=6, min_tumour_radius=0)
        .inpaint_slice(Oracle(healthy), image, ooi)
        .unchanged
    )


def test_ooi_without_grid_points_returns_unchanged(scene):
    healthy, image, _, _ = scene
    ooi = torch.zeros(SIZE, SIZE)
    ooi[1:3, 1:3] = 1  # no multiple of step=15 inside
    result = autoinpainting.AutoInpainter().inpaint_slice(Oracle(healthy), image, ooi)
    assert result.unchanged and result.chosen == -1 and len(result.circles) == 0


def test_circles_are_batched_and_give_the_same_result_as_one_per_pass(scene):
    _, image, _, ooi = scene
    torch.manual_seed(0)
    net = GatedUNet(channels=(4, 8, 8), kernel_sizes=(5, 3, 3)).eval()
    naive = Oracle(torch.zeros(1))  # counting wrapper around the real network
    naive.forward = lambda x: (setattr(naive, "calls", naive.calls + 1), net(x))[1]
    batched = autoinpainting.AutoInpainter(radius=12, step=12, batch_size=64, min_tumour_radius=0)
    one = autoinpainting.AutoInpainter(radius=12, step=12, batch_size=1, min_tumour_radius=0)
    a = batched.inpaint_slice(net, image, ooi)
    b = one.inpaint_slice(naive, image, ooi)
    n = len(a.circles)
    assert naive.calls == n + len(b.candidate_residuals)  # candidates after the settled choice: not inpainted
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4)
    assert np.array_equal(a.top, b.top) and a.chosen == b.chosen
    torch.testing.assert_close(a.inpainted, b.inpainted, atol=1e-5, rtol=1e-5)


def test_residual_volume_scales_both_with_the_input_range():
    images = torch.tensor([[[0.0, 10.0], [5.0, 5.0]]])
    inpainted = torch.tensor([[[0.0, 10.0], [2.0, 5.0]]])
    np.testing.assert_allclose(
        autoinpainting.residual_volume(images, inpainted).numpy(), [[[0, 0], [0.3, 0]]], atol=1e-6
    )
    with pytest.raises(ValueError, match="shape"):
        autoinpainting.residual_volume(images, inpainted[..., :1])


def test_search_in_mm_gives_the_papers_pixels_at_its_spacing_and_scales_with_the_slice():
    """At the paper's 0.976 mm pixels the mm search is exactly its 27 px / 15 px / 6 px / 7-15 px; at 2 mm the
    circles cover the same millimetres (13.18 px radius, 7 px step, odd dilation widths 3, 5, 7)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    search = parser.get_parsed_content("search")
    paper = autoinpainting.search_in_pixels(0.976, **search)
    assert paper["radius"] == pytest.approx(27) and paper["step"] == 15
    assert paper["min_tumour_radius"] == pytest.approx(6) and paper["dilation_widths"] == [7, 9, 11, 13, 15]
    brain = autoinpainting.search_in_pixels(2.0, **search)
    assert brain["radius"] == pytest.approx(26.352 / 2) and brain["step"] == 7
    assert brain["dilation_widths"] == [3, 5, 7] and brain["top_k"] == 3
    with pytest.raises(ValueError, match="positive"):
        autoinpainting.search_in_pixels(0.0, **search)


def test_inferer_in_mm_reads_the_spacing_from_each_slice(scene):
    """The same scene stored at 2 mm pixels with a 24 mm radius finds the same tumour as 12 px circles; a slice
    with anisotropic pixels or without an affine (and no spacing_mm) is refused."""
    healthy, image, tumour, ooi = scene
    plain = torch.cat([image, ooi[None]])[None]
    pixels = autoinpainting.AutoInpaintingInferer(threshold=0.1, radius=12, step=6)(plain, Oracle(healthy))
    inferer = autoinpainting.AutoInpaintingInferer(threshold=0.1, radius_mm=24.0, step_mm=12.0,
                                                   min_tumour_radius_mm=12.0, dilation_widths_mm=[14, 18, 22, 26, 30])
    at_2mm = inferer(MetaTensor(plain, affine=torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))), Oracle(healthy))
    assert torch.equal(at_2mm.as_tensor(), pixels)
    assert inferer.searcher(MetaTensor(plain, affine=torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))), 0).radius == 12
    with pytest.raises(ValueError, match="anisotropic"):
        inferer(MetaTensor(plain, affine=torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0]))), Oracle(healthy))
    with pytest.raises(ValueError, match="no affine"):
        inferer(plain, Oracle(healthy))


def test_inferer_outputs_segmentation_residual_inpainted_with_metadata(scene):
    """The OOI travels as the last input channel (what MONAI Label passes): it is split off and limits the search."""
    healthy, image, tumour, ooi = scene
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))
    batch = MetaTensor(torch.cat([image, ooi[None]])[None], affine=affine)
    inferer = autoinpainting.AutoInpaintingInferer(threshold=0.1, radius=12, step=6)
    out = inferer(batch, Oracle(healthy))
    assert out.shape == (1, 3, SIZE, SIZE)
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, affine.to(out.affine.dtype))
    assert torch.equal(out[0, :1].as_tensor(), tumour)
    far_from_tumour = torch.from_numpy(disc((85, 85), 10))[None]
    out = inferer(torch.cat([image, far_from_tumour])[None], Oracle(healthy))
    assert not out[0, 0].any() and torch.equal(out[0, 2:], image)
    with pytest.raises(ValueError, match="organ-of-interest"):
        inferer(image[None], Oracle(healthy))
    with pytest.raises(ValueError, match="organ-of-interest"):
        inferer(torch.cat([image, image])[None], Oracle(healthy))


def test_split_inferer_output_into_segmentation_residual_and_inpainted():
    """Channel 0 and 1 become channel-less (H, W) maps for SaveImaged; the C inpainted channels stay an image."""
    output = MetaTensor(torch.arange(16, dtype=torch.float32).reshape(4, 2, 2))
    d = autoinpainting.SplitInfererOutputd("pred")({"pred": output})
    assert [tuple(d[k].shape) for k in ("pred", "residual", "inpainted")] == [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert torch.equal(d["residual"].as_tensor(), output[1:2].as_tensor())
    assert torch.equal(d["inpainted"].as_tensor(), output[2:].as_tensor())
    assert all(math.isnan(d[k].meta["original_channel_dim"]) for k in ("pred", "residual"))
    assert "original_channel_dim" not in d["inpainted"].meta


def test_bad_search_arguments_raise():
    with pytest.raises(ValueError, match="odd"):
        autoinpainting.AutoInpainter(dilation_widths=(6,))
    with pytest.raises(ValueError, match="radius"):
        autoinpainting.AutoInpainter(radius=0)
    with pytest.raises(ValueError, match="NaN"):
        autoinpainting.AutoInpainter().inpaint_slice(
            Oracle(torch.zeros(1, 4, 4)), torch.full((1, 4, 4), float("nan")), torch.ones(4, 4)
        )


@pytest.mark.parametrize(
    "shape, channels, kernels",
    [
        ((96, 96), (4, 8, 8), (5, 3, 3)),
        ((75, 61), (4, 8, 8, 8, 8), (7, 5, 5, 3, 3)),
        ((128, 100), (8, 16, 32, 32, 32, 32, 32, 32), (7, 5, 5, 3, 3, 3, 3, 3)),  # the shipped layout
    ],
)
def test_local_pass_gives_the_whole_slice_composites(shape, channels, kernels):
    """The local pass computes only the outputs that reach each hole: the whole-slice network's composites
    for holes at corners and edges (zero padding), inside, tiny and empty, odd map sizes, trained-like BN."""
    torch.manual_seed(0)
    net = GatedUNet(channels=channels, kernel_sizes=kernels).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    height, width = shape
    image = torch.rand(1, height, width)
    yy, xx = np.mgrid[:height, :width]
    spots = [(0, 0, 10), (height - 1, width // 2, 12), (height // 2, width // 2, 9), (5, width - 3, 14)]
    spots.append((height // 3, 7, 1))
    holes = [(yy - y) ** 2 + (xx - x) ** 2 <= r * r for y, x, r in spots] + [np.zeros(shape, bool)]
    holes = torch.as_tensor(np.stack(holes)[:, None])
    whole = autoinpainting.AutoInpainter(local=False, fill_value=0.3).inpaint(net, image, holes)
    local = autoinpainting.AutoInpainter(fill_value=0.3, batch_size=4)
    assert autoinpainting.supports_local_pass(net)
    torch.testing.assert_close(local.inpaint(net, image, holes), whole, atol=1e-5, rtol=1e-5)
    assert not autoinpainting.supports_local_pass(net.train())  # batch statistics: not local


def test_local_search_gives_the_naive_search_answer_with_the_shipped_layout(scene):
    """The default search (local pass: box-only scores, folded BatchNorm, channels-last windows) ranks the circles,
    unites and dilates them and inpaints the slice as the naive one-circle-per-pass whole-slice search does, with
    circles at the OOI's edge and the image border (shipped 8-level layout, trained-like BatchNorm)."""
    _, image, _, ooi = scene
    torch.manual_seed(0)
    net = GatedUNet(channels=(8, 16, 32, 32, 32, 32, 32, 32), kernel_sizes=(7, 5, 5, 3, 3, 3, 3, 3)).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    options = {"radius": 14, "step": 10, "min_tumour_radius": 0}
    naive = autoinpainting.AutoInpainter(batch_size=1, local=False, **options).inpaint_slice(net, image, ooi)
    local = autoinpainting.AutoInpainter(batch_size=16, **options).inpaint_slice(net, image, ooi)
    assert len(local.circles) > 16  # several batches
    np.testing.assert_allclose(local.scores, naive.scores, rtol=1e-5)
    assert np.array_equal(local.top, naive.top) and local.chosen == naive.chosen
    np.testing.assert_allclose(local.candidate_residuals, naive.candidate_residuals, rtol=1e-5)
    torch.testing.assert_close(local.inpainted, naive.inpainted, atol=1e-5, rtol=0)
    assert torch.equal(local.mask, naive.mask)


def test_crop_scoring_finds_the_same_circles_with_an_oracle(scene):
    """With a context-free (oracle) inpainter, scoring circles on crops gives exactly the full-slice scores."""
    healthy, image, _, ooi = scene
    full = autoinpainting.AutoInpainter(radius=12, step=6).inpaint_slice(Oracle(healthy), image, ooi)
    oracle = Oracle(torch.tensor(0.3))  # broadcasts to any crop size
    oracle.forward = lambda x: torch.full_like(x[:, :1], 0.3)
    cropped = autoinpainting.AutoInpainter(radius=12, step=6, crop_size=32).inpaint_slice(oracle, image, ooi)
    np.testing.assert_allclose(cropped.scores, full.scores, rtol=1e-5)
    torch.testing.assert_close(cropped.inpainted, full.inpainted)
    with pytest.raises(ValueError, match="diameter"):
        autoinpainting.AutoInpainter(radius=12, crop_size=24)


def test_outputs_keep_the_subject_folders_so_equal_slice_names_do_not_overwrite(tmp_path):
    from monai.transforms import SaveImage

    from common.engines import RelativeOutputName

    root, out = tmp_path / "data", tmp_path / "out"
    sources = [
        root / "sub-1/slices/z050.nii.gz",
        root / "sub-2/slices/z050.nii.gz",
        tmp_path / "own/z050.nii.gz",
    ]
    for k, source in enumerate(sources):
        image = MetaTensor(torch.full((2, 6, 5, 1), float(k)))
        image.meta["filename_or_obj"] = str(source)
        SaveImage(
            out,
            "pred",
            separate_folder=False,
            data_root_dir=str(root),
            print_log=False,
            output_name_formatter=RelativeOutputName(root),
        )(image)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.nii.gz"))
    assert written == ["sub-1/slices/z050_pred.nii.gz", "sub-2/slices/z050_pred.nii.gz", "z050_pred.nii.gz"]


def test_tumour_slices_keep_the_tumour_slices_under_common_keys(tmp_path):
    """The segmentation datalist: slices with a tumour, the datalist's keys renamed to image/label/ooi."""
    files = {"image_tumour": "z3.nii", "label_tumour": "l", "brain": "b"}
    entries = [{"subject": "p1", "slice_z": z, **files, "tumour_pixels": n} for z, n in ((3, 9), (4, 0))]
    (tmp_path / "datalist.json").write_text(json.dumps({"test": entries}), encoding="utf-8")
    [entry] = scripts.evaluation.tumour_slices(str(tmp_path / "datalist.json"), ["test"])
    assert entry["slice_z"] == 3 and Path(entry["image"]).name == "z3.nii"
    assert (entry["label"], entry["ooi"]) == ("l", "b")


def test_evaluate_reports_every_metric_from_the_checkpoint_without_the_training_setup(tmp_path):
    """evaluate.json needs only ``checkpoint``: the training loss's VGG (here a missing file) is never built, and
    no models/ or tensorboard/ folder is created."""
    out, missing_vgg = tmp_path / "eval", str(tmp_path / "missing_vgg16.pth")
    configs = config_list(*(BUNDLE / "configs" / n for n in ("train.json", "quick.json", "evaluate.json")))
    run_bundle(
        ["run", "evaluating", "--config_file", configs, "--bundle_root", str(BUNDLE)]
        + ["--output_dir", str(out), "--checkpoint", str(BUNDLE / "models" / "model.pt")]
        + ["--loss_weights#perceptual", "0.2", "--pretrained", "True", "--vgg_weights_path", missing_vgg]
        + ["--validate#dataset#data", "$@validate#datalist[:1]", "--search#step_mm", "51"]
        + ["--segmentation_datalist", "$@scripts.evaluation.tumour_slices(@datalist_file, ['test'])[:1]"],
        cwd=tmp_path,
    )
    metrics = dict(line.split(",") for line in (out / "metrics.csv").read_text(encoding="utf-8").splitlines())
    assert set(metrics) == {"val_psnr", "val_psnr_hole", "val_ssim", "val_mse_255"}
    report = json.loads((out / "segmentation_GconvLap.json").read_text(encoding="utf-8"))
    assert set(report["mean"]) == {"dice", "precision", "recall", "dice_best"}
    assert not [p for p in tmp_path.rglob("*") if p.name in ("models", "tensorboard")]


def test_inference_searches_on_the_model_grid_whatever_the_slice_orientation(tmp_path):
    """A sample tumour slice and the same slice stored LAS (first axis reversed, same world positions): the
    segmentation, residual and inpainted image come back on each input's own grid and agree voxel for voxel
    at the same world positions (the search runs on the model grid, RAS, in both cases)."""
    import nibabel as nib
    from harness import run_inference_in_process

    import common.data

    root = Path(common.data.ensure_sample_data(str(common.data.dataset_dir())))
    entry = next(e for e in json.loads((root / "datalist_2d.json").read_text(encoding="utf-8"))["test"]
                 if e["tumour_pixels"] > 0)
    entries = []
    for flip in (False, True):
        folder = tmp_path / ("las" if flip else "ras")
        folder.mkdir()
        item = {}
        for key, source in (("image", entry["image_tumour"]), ("brain", entry["brain"])):
            image = nib.load(str(root / source))
            data, affine = np.asarray(image.dataobj), image.affine.copy()
            if flip:
                affine[:, 0] = -image.affine[:, 0]
                affine[:3, 3] = image.affine[:3, 3] + image.affine[:3, 0] * (data.shape[0] - 1)
                data = data[::-1].copy()
            nib.save(nib.Nifti1Image(data, affine), str(folder / f"{key}.nii.gz"))
            item[key] = str(folder / f"{key}.nii.gz")
        entries.append(item)
    outputs = {}
    for name, item in zip(("ras", "las"), entries):
        run_inference_in_process(BUNDLE, tmp_path / f"out_{name}", [item])
        for kind in ("pred", "residual", "inpainted"):
            written = nib.load(str(next((tmp_path / f"out_{name}").rglob(f"*_{kind}.nii.gz"))))
            np.testing.assert_allclose(written.affine, nib.load(item["image"]).affine, atol=1e-4)
            outputs[name, kind] = np.asarray(written.dataobj, np.float32)
    assert outputs["ras", "pred"].any(), "nothing segmented: the comparison would be empty"
    for kind in ("pred", "residual", "inpainted"):
        np.testing.assert_allclose(outputs["las", kind][::-1], outputs["ras", kind], atol=1e-4, err_msg=kind)


def test_adaptation_fits_the_scan_and_leaves_the_network_untouched():
    """Fine-tuning on a scan's own slices with random holes lowers the hole error on that scan (here a texture
    the network has never seen), is seeded (same seed, same weights), and does not modify the network passed in."""
    adaptation = load_bundle_scripts(BUNDLE).adaptation
    torch.manual_seed(0)
    network = GatedUNet(1, 1, channels=[4, 8, 8], kernel_sizes=[5, 3, 3])
    before = {k: v.clone() for k, v in network.state_dict().items()}
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    slices = [(0.5 + 0.3 * torch.sin(xx / 3 + k) * torch.cos(yy / 4))[None] for k in range(4)]
    oois = [torch.ones(48, 48)] * 4
    hole = torch.zeros(1, 1, 48, 48)
    hole[..., 16:30, 18:32] = 1

    def hole_error(net):
        with torch.no_grad():
            target = slices[0][None]
            out = net.eval()(torch.cat([target * (1 - hole), hole], 1))
        return float(((out - target).abs() * hole).sum() / hole.sum())

    adapted = adaptation.adapt_to_scan(network, slices, oois, iterations=60, learning_rate=3e-3, batch_size=4)
    again = adaptation.adapt_to_scan(network, slices, oois, iterations=60, learning_rate=3e-3, batch_size=4)
    assert all(torch.equal(v, before[k]) for k, v in network.state_dict().items())
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in adapted.state_dict().items())
    assert hole_error(adapted) < 0.7 * hole_error(network)
    with pytest.raises(ValueError, match="one OOI per slice"):
        adaptation.adapt_to_scan(network, slices, oois[:2])
