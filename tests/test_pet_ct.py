"""PET/CT preprocessing: SUV from synthesised DICOM PET headers, B-spline resampling, windows, slices, OOIs."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from common.bundle_scripts import load_bundle_scripts
from common.transforms import DropTrailingSingletond

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "autoinpainting_tumor_segmentation"
pet_ct = load_bundle_scripts(BUNDLE).pet_ct

F18_HALF_LIFE = 6586.2  # s (109.77 min)


def pet_header(**overrides) -> Dataset:
    ds = Dataset()
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.PatientWeight = 70.0
    ds.AcquisitionTime = "110000"
    ds.SeriesTime = "103000"
    info = Dataset()
    info.RadionuclideTotalDose = 370e6
    info.RadionuclideHalfLife = F18_HALF_LIFE
    info.RadiopharmaceuticalStartTime = "100000"
    ds.RadiopharmaceuticalInformationSequence = [info]
    for key, value in overrides.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def test_suv_factor_decays_the_dose_to_acquisition_time():
    # one hour after injection: dose * 2^(-3600 / 6586.2) = 370 MBq * 0.68464 = 253.32 MBq
    expected = 70_000 / (370e6 * 2 ** (-3600 / F18_HALF_LIFE))
    assert pet_ct.suv_factor(pet_header()) == pytest.approx(expected, rel=1e-9)
    assert pet_ct.suv_factor(pet_header()) == pytest.approx(70_000 / 253.32e6, rel=1e-4)
    # SeriesTime is 30 min after injection
    assert pet_ct.suv_factor(pet_header(), time_reference="series") == pytest.approx(
        70_000 / (370e6 * 2 ** (-1800 / F18_HALF_LIFE)), rel=1e-9
    )


def test_suv_factor_admin_decay_correction_and_midnight():
    assert pet_ct.suv_factor(pet_header(DecayCorrection="ADMIN")) == pytest.approx(70_000 / 370e6)
    header = pet_header(AcquisitionTime="003000")
    header.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = "233000"
    assert pet_ct.suv_factor(header) == pytest.approx(70_000 / (370e6 * 2 ** (-3600 / F18_HALF_LIFE)))


def test_suv_factor_prefers_full_date_times():
    header = pet_header(AcquisitionDateTime="20240102110000")
    header.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20240101110000"
    day = 86400
    assert pet_ct.suv_factor(header) == pytest.approx(70_000 / (370e6 * 2 ** (-day / F18_HALF_LIFE)))


@pytest.mark.parametrize(
    "field, where",
    [
        ("PatientWeight", None),
        ("Units", None),
        ("DecayCorrection", None),
        ("AcquisitionTime", None),
        ("RadionuclideTotalDose", "seq"),
        ("RadionuclideHalfLife", "seq"),
        ("RadiopharmaceuticalStartTime", "seq"),
    ],
)
def test_missing_header_field_is_named_in_the_error(field, where):
    header = pet_header()
    delattr(header.RadiopharmaceuticalInformationSequence[0] if where else header, field)
    with pytest.raises(ValueError, match=field):
        pet_ct.suv_factor(header)


def test_wrong_units_raise():
    with pytest.raises(ValueError, match="BQML"):
        pet_ct.suv_factor(pet_header(Units="CNTS"))


def write_pet_series(
    folder, volume, slope, header, spacing=2.0, origin=(0.0, 0.0, 0.0), intercept=0, ct=False
):
    """A minimal PET (or, with ``ct``, CT) DICOM series, one file per axial slice of the (z, y, x) ``volume``,
    ``spacing`` mm isotropic; the PET carries the SUV header fields of ``header``."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    for k, plane in enumerate(volume):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2" if ct else "1.2.840.10008.5.1.4.1.1.128"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.update(header)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = ("CT" if ct else "PT"), series, study
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + spacing * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = spacing
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = plane.astype(np.uint16).tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm", enforce_file_format=True)


def test_read_pet_suv_applies_rescale_and_suv_factor(tmp_path):
    counts = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5) * 10
    write_pet_series(tmp_path / "pet", counts, slope=2.5, header=pet_header())
    suv = sitk.GetArrayFromImage(pet_ct.read_pet_suv(tmp_path / "pet"))  # (z, y, x)
    np.testing.assert_allclose(suv, counts * 2.5 * pet_ct.suv_factor(pet_header()), rtol=1e-5)


def image_with_values(values, spacing, origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def test_bspline_resampling_reproduces_a_linear_ramp_on_the_ct_grid():
    x = np.arange(20) * 4.0  # PET: 4 mm voxels, value = physical x (mm)
    pet = image_with_values(np.broadcast_to(x, (6, 10, 20)).copy(), (4.0, 4.0, 4.0))
    ct = image_with_values(np.zeros((8, 16, 30)), (1.5, 1.5, 2.0), origin=(10.25, 3.0, 4.0))
    out = pet_ct.resample_to_reference(pet, ct, order=3)
    assert out.GetSize() == ct.GetSize() and out.GetSpacing() == ct.GetSpacing()
    values = sitk.GetArrayFromImage(out)
    physical_x = 10.25 + 1.5 * np.arange(30)
    interior = (physical_x > 16) & (physical_x < 60)  # away from the B-spline's boundary effects
    np.testing.assert_allclose(values[2, 5, interior], physical_x[interior], atol=0.05)
    with pytest.raises(ValueError, match="order"):
        pet_ct.resample_to_reference(pet, ct, order=2)


def test_windows_clamp_and_scale():
    hu = np.array([-2000.0, -1000.0, -250.0, 500.0, 3000.0])
    np.testing.assert_allclose(pet_ct.window_to_unit(hu, "lung"), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(pet_ct.window_to_unit(hu, "head_and_neck"), [0, 0, 0, 1, 1])
    np.testing.assert_allclose(pet_ct.window_to_unit(np.array([-1.0, 6.0, 20.0]), (0, 12)), [0, 0.5, 1])
    with pytest.raises(ValueError, match="window"):
        pet_ct.window_to_unit(hu, (5, 5))


def test_axial_slices_shape():
    slices = pet_ct.axial_slices(np.random.rand(64, 48, 5), size=(128, 96))
    assert slices.shape == (5, 128, 96)
    with pytest.raises(ValueError, match="3D"):
        pet_ct.axial_slices(np.zeros((4, 4)))


def ellipse(shape, centre, radii):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1


def chest_phantom():
    """Air, a soft-tissue body, two lungs (-850 HU) with a nodule (40 HU) inside the left one, a trachea."""
    shape = (128, 128)
    ct = np.full(shape, -1000.0)
    ct[ellipse(shape, (64, 64), (50, 60))] = 40.0
    lungs = ellipse(shape, (64, 38), (30, 16)) | ellipse(shape, (64, 90), (30, 16))
    ct[lungs] = -850.0
    ct[ellipse(shape, (64, 38), (5, 5))] = 40.0  # nodule, must stay inside the OOI
    ct[ellipse(shape, (30, 64), (3, 3))] = -1000.0  # trachea: small, dropped
    return ct, lungs


def test_lung_field_mask_finds_both_lungs_with_the_nodule():
    ct, lungs = chest_phantom()
    mask = pet_ct.lung_field_mask(ct)
    dice = 2 * (mask & lungs).sum() / (mask.sum() + lungs.sum())
    assert dice > 0.97
    assert mask[64, 38]  # nodule filled in
    assert not mask[0, 0] and not mask[30, 64]  # outside air and trachea excluded


def test_foreground_mask_is_the_filled_object():
    image = ellipse((64, 64), (32, 32), (20, 25)).astype(float)
    image[30:34, 30:34] = 0  # a dark hole inside the object
    mask = pet_ct.foreground_mask(image)
    assert np.array_equal(mask, ellipse((64, 64), (32, 32), (20, 25)))
    with pytest.raises(ValueError, match="constant"):
        pet_ct.foreground_mask(np.ones((8, 8)))


def test_organ_of_interest_uses_the_given_mask_else_the_fallback():
    ct, lungs = chest_phantom()
    image = MetaTensor(torch.as_tensor(ct)[None], affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    given = torch.zeros(1, 128, 128)
    given[0, 10:20, 10:20] = 1
    out = pet_ct.OrganOfInterestd("image", source_key="ooi")({"image": image, "ooi": given})
    assert torch.equal(out["ooi"].as_tensor(), given)
    out = pet_ct.OrganOfInterestd("image", source_key="ooi", fallback="lung")({"image": image})
    assert out["ooi"].shape == (1, 128, 128) and out["ooi"][0].bool().numpy()[lungs].mean() > 0.95
    torch.testing.assert_close(out["ooi"].affine, image.affine)
    with pytest.raises(KeyError, match="fallback"):
        pet_ct.OrganOfInterestd("image", fallback=None)({"image": image})
    with pytest.raises(ValueError, match="empty"):
        pet_ct.OrganOfInterestd("image")({"image": image, "ooi": torch.zeros(1, 128, 128)})
    with pytest.raises(ValueError, match="shape"):
        pet_ct.OrganOfInterestd("image")({"image": image, "ooi": torch.ones(1, 64, 64)})


def test_drop_trailing_singleton_keeps_the_affine_and_updates_the_spatial_shape():
    affine = torch.tensor([[0.8, 0, 0, -100.0], [0, 0.8, 0, -120.0], [0, 0, 1.0, 7.0], [0, 0, 0, 1.0]])
    image = MetaTensor(torch.rand(1, 6, 5, 1), affine=affine, meta={"spatial_shape": np.array([6, 5, 1])})
    out = DropTrailingSingletond("image")({"image": image})["image"]
    assert out.shape == (1, 6, 5)
    torch.testing.assert_close(out.affine, affine.to(out.affine.dtype))
    assert list(out.meta["spatial_shape"]) == [6, 5]
    flat = MetaTensor(torch.rand(1, 6, 5))
    assert DropTrailingSingletond("image")({"image": flat})["image"].shape == (1, 6, 5)


def test_dicom_time_parsing_rejects_garbage():
    with pytest.raises(ValueError, match="AcquisitionTime"):
        pet_ct.suv_factor(pet_header(AcquisitionTime="noon"))


def test_drop_trailing_singleton_can_require_2d():
    from common.transforms import DropTrailingSingletond

    volume = torch.rand(1, 6, 5, 3)
    assert DropTrailingSingletond("image")({"image": volume})["image"].shape == (1, 6, 5, 3)
    with pytest.raises(ValueError, match="slice volumes before a 2D model"):
        DropTrailingSingletond("image", require_2d=True)({"image": volume})


def test_prepare_pet_ct_subject_writes_suv_and_windowed_ct_slices_and_a_datalist(tmp_path):
    """Tiny PET/CT pair: CT 12x12x4 at 2 mm (HU = stored - 1024), PET 10x10x4 at 4 mm covering it, uniform
    21700 Bq/ml (stored 43400 x slope 0.5). Hand-computed SUV at every CT voxel: the dose decays for one hour,
    370 MBq x 2^(-3600 / 6586.2) = 253.32 MBq, so SUV = 21700 x 70000 g / 253.32e6 Bq = 5.996; on [0, 12] that
    is 0.4997. CT voxels x 3-4, y 5-6 of slice 1 are -250 HU: lung window (-250 + 1000) / 1500 = 0.5."""
    from monai.data import load_decathlon_datalist
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    ct_hu = np.full((4, 12, 12), 40.0)  # (z, y, x)
    ct_hu[1, 5:7, 3:5] = -250.0
    write_pet_series(tmp_path / "ct", ct_hu + 1024, slope=1, intercept=-1024, header=Dataset(), ct=True)
    pet = np.full((4, 10, 10), 43400)
    write_pet_series(
        tmp_path / "pet", pet, slope=0.5, header=pet_header(), spacing=4.0, origin=(-8.0, -8.0, -2.0)
    )
    ooi = np.zeros((4, 12, 12), np.uint8)  # (z, y, x): slices 1 and 2 only
    ooi[1:3, 2:10, 2:10] = 1
    label = np.zeros_like(ooi)
    label[2, 4:6, 4:6] = 1  # a tumour on slice 2
    for name, mask in (("ooi", ooi), ("label", label)):
        image = sitk.GetImageFromArray(mask)
        image.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "slices"
    kwargs = dict(ooi=tmp_path / "ooi.nii.gz", label=tmp_path / "label.nii.gz", size=(24, 24))
    train = pet_ct.prepare_pet_ct_subject(tmp_path / "ct", tmp_path / "pet", out, "p1", "training", **kwargs)
    assert [e["slice_z"] for e in train] == [1]  # slice 2 has the tumour: not a healthy training slice
    test = pet_ct.prepare_pet_ct_subject(tmp_path / "ct", tmp_path / "pet", out, "p2", "test", **kwargs)
    assert [(e["slice_z"], e["tumour_pixels"]) for e in test] == [(1, 0), (2, 16)]  # 2x2 px -> 4x4 at 24x24

    assert pet_ct.datalist_channels(out / "datalist.json") == 2
    datalist = load_decathlon_datalist(out / "datalist.json", False, "training")
    assert len(datalist) == 1 and load_decathlon_datalist(out / "datalist.json", False, "test")[1]["label"]
    keys = ["image", "ooi"]
    data = EnsureChannelFirstd(keys)(LoadImaged(keys, image_only=True)(datalist[0]))
    image = data["image"][..., 0]
    assert image.shape == (2, 24, 24)  # channel 0 CT, channel 1 PET (SUV)
    np.testing.assert_allclose(image[1].numpy(), 5.996 / 12, rtol=1e-3)
    assert (21700 * 70_000 / (370e6 * 2 ** (-3600 / F18_HALF_LIFE))) == pytest.approx(5.996, rel=1e-3)
    # 2x zoom, pixel areas aligned: new pixel 7 samples old x 3.25, pixel 8 old x 3.75 (both between -250 HU
    # voxels); the 40 HU neighbourhood is 1040 / 1500
    np.testing.assert_allclose(image[0, 7:9, 11:13].numpy(), 0.5, atol=1e-6)
    np.testing.assert_allclose(image[0, 0, 0].item(), 1040 / 1500, atol=1e-6)
    assert data["ooi"].shape == (1, 24, 24) and data["ooi"].sum() == 16 * 16  # 2D, like the sample slices
    # RAS geometry: 1 mm pixels (2 mm halved), 2 mm slices; CT slice 1 at z = 2 mm; the first new pixel's centre
    # is a quarter of an old voxel before the old first centre: x = -(0 - 0.5 mm) in RAS
    np.testing.assert_allclose(np.diag(data["image"].affine.numpy())[:3], [-1.0, -1.0, 2.0])
    np.testing.assert_allclose(data["image"].affine[:3, 3].numpy(), [0.5, 0.5, 2.0], atol=1e-6)

    bad = pet_header(PatientWeight=None)
    write_pet_series(tmp_path / "pet_no_weight", pet, slope=0.5, header=bad, spacing=4.0)
    with pytest.raises(ValueError, match="PatientWeight"):
        pet_ct.prepare_pet_ct_subject(tmp_path / "ct", tmp_path / "pet_no_weight", out, "p3", **kwargs)


def test_prepare_ct_alone_writes_one_channel_windowed_slices(tmp_path):
    """CT without PET (``--modality ct``, no ``--pet``): one-channel lung-windowed slices, the lung-field OOI
    fallback; asking for a PET channel without a PET series is refused by name."""
    from monai.data import load_decathlon_datalist
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    phantom, _ = chest_phantom()
    ct_hu = np.repeat(phantom[None], 3, axis=0)  # (z, y, x)
    image = sitk.GetImageFromArray(ct_hu.astype(np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    out = tmp_path / "slices"
    entries = pet_ct.prepare_pet_ct_subject(tmp_path / "ct.nii.gz", None, out, "c1", "test", modality="ct",
                                            size=(64, 64))
    assert [e["slice_z"] for e in entries] == [0, 1, 2]
    assert pet_ct.datalist_channels(out / "datalist.json") == 1
    entry = load_decathlon_datalist(out / "datalist.json", False, "test")[0]
    data = EnsureChannelFirstd(["image", "ooi"])(LoadImaged(["image", "ooi"], image_only=True)(entry))
    assert data["image"].shape[0] == 1
    # lung window [-1000, 500] HU: the -850 HU lungs at 0.1, the 40 HU body at 1040 / 1500
    values = data["image"][0].numpy().ravel()
    assert np.isclose(values, 0.1, atol=1e-5).any() and np.isclose(values, 1040 / 1500, atol=1e-5).any()
    assert data["ooi"].sum() > 0
    with pytest.raises(ValueError, match="needs a PET series"):
        pet_ct.prepare_pet_ct_subject(tmp_path / "ct.nii.gz", None, out, "c2", "test")
