"""Reading every radiograph flavour into one convention; clear errors for everything else."""
from __future__ import annotations

import datetime

import cv2
import numpy as np
import pytest
from PIL import Image

from handprep.io import (ImageReadError, atomic_write_bytes, decode_image, list_images, read_image,
                         read_image_with_info, read_mask, write_png)


def gradient(h=40, w=30, dtype=np.uint8, top=255):
    return (np.linspace(0, top, h * w).reshape(h, w)).astype(dtype)


def test_8bit_png_round_trip(tmp_path):
    image = gradient()
    write_png(tmp_path / "a.png", image)
    out, info = read_image_with_info(tmp_path / "a.png")
    assert out.dtype == np.uint8 and np.array_equal(out, image)
    assert info.format == "png" and info.notes == []


def test_16bit_png_keeps_depth(tmp_path):
    image = gradient(dtype=np.uint16, top=4095)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint16 and np.array_equal(out, image)


def test_palette_png_becomes_its_grey_levels(tmp_path):
    image = gradient()
    pal = Image.fromarray(image).convert("P")  # grey palette
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = read_image(tmp_path / "p.png")
    assert out.ndim == 2 and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).max() <= 1


def test_rgb_stored_grey_takes_one_channel(tmp_path):
    image = gradient()
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.merge([image, image, image]))
    out, info = read_image_with_info(tmp_path / "rgb.png")
    assert np.array_equal(out, image) and info.source_channels == 3 and info.notes == []


def test_rgba_opaque_and_transparent(tmp_path):
    image = gradient()
    alpha = np.full_like(image, 255)
    cv2.imwrite(str(tmp_path / "opaque.png"), cv2.merge([image, image, image, alpha]))
    assert np.array_equal(read_image(tmp_path / "opaque.png"), image)
    alpha[:, :10] = 0  # transparent strip is background → black
    cv2.imwrite(str(tmp_path / "clear.png"), cv2.merge([image, image, image, alpha]))
    out, info = read_image_with_info(tmp_path / "clear.png")
    assert (out[:, :10] == 0).all() and np.array_equal(out[:, 10:], image[:, 10:])
    assert "alpha composited onto black" in info.notes


def test_true_colour_converted_to_luminance(tmp_path):
    bgr = np.zeros((20, 20, 3), np.uint8)
    bgr[..., 2] = 200  # red
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    out, info = read_image_with_info(tmp_path / "red.png")
    assert out.shape == (20, 20) and abs(int(out[0, 0]) - round(0.299 * 200)) <= 1
    assert any("colour" in n for n in info.notes)


def test_jpeg_and_tiff(tmp_path):
    image = gradient()
    cv2.imwrite(str(tmp_path / "a.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    cv2.imwrite(str(tmp_path / "a.tif"), gradient(dtype=np.uint16, top=65535))
    jpg = read_image(tmp_path / "a.jpg")
    assert jpg.dtype == np.uint8 and np.abs(jpg.astype(int) - image).max() <= 3
    tif = read_image(tmp_path / "a.tif")
    assert tif.dtype == np.uint16 and tif.max() == 65535


def test_float_tiff_maps_range_to_uint16(tmp_path):
    values = np.linspace(-1.0, 3.0, 600, dtype=np.float32).reshape(20, 30)
    cv2.imwrite(str(tmp_path / "f.tif"), values)
    out, info = read_image_with_info(tmp_path / "f.tif")
    assert out.dtype == np.uint16 and out.min() == 0 and out.max() == 65535
    assert any("mapped to uint16" in n for n in info.notes)


def _write_dicom(path, pixels, photometric="MONOCHROME2", slope=1.0, intercept=0.0, window=None, bits=12):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyDate = "DX", datetime.date.today().strftime("%Y%m%d")
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_monochrome2_raw_values_kept(tmp_path):
    pixels = gradient(dtype=np.uint16, top=4095)
    _write_dicom(tmp_path / "a.dcm", pixels)
    out, info = read_image_with_info(tmp_path / "a.dcm")
    assert info.format == "dicom" and out.dtype == np.uint16 and np.array_equal(out, pixels)


def test_dicom_monochrome1_inverted_so_bone_is_bright(tmp_path):
    pixels = gradient(dtype=np.uint16, top=4095)
    _write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1")
    out, info = read_image_with_info(tmp_path / "m1.dcm")
    assert np.array_equal(out, 4095 - pixels)
    assert any("MONOCHROME1" in n for n in info.notes)


def test_dicom_window_applied(tmp_path):
    pixels = gradient(dtype=np.uint16, top=4095)
    _write_dicom(tmp_path / "w.dcm", pixels, window=(1000, 400))  # shows 800..1200 only
    out = read_image(tmp_path / "w.dcm")
    flat = out.ravel()
    src = pixels.ravel()
    assert flat[src < 790].max() == 0 and flat[src > 1210].min() == 65535
    inside = (src > 850) & (src < 1150)
    assert np.all(np.diff(flat[inside].astype(int)) >= 0)  # monotone inside the window


def test_dicom_without_preamble_by_extension(tmp_path):
    pixels = gradient(dtype=np.uint16, top=4095)
    _write_dicom(tmp_path / "a.dcm", pixels)
    raw = (tmp_path / "a.dcm").read_bytes()
    out, info = decode_image(raw[132:], "b.dcm")  # strip preamble + DICM
    assert info.format == "dicom"


@pytest.mark.parametrize("content, expected", [
    (b"", "file is empty"),
    (b"hello, I am not an image", "looks like text"),
    (b"%PDF-1.4 whatever", "PDF"),
    (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08", "match no supported format"),
])
def test_unreadable_content_named_in_error(tmp_path, content, expected):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_truncated_png_and_jpeg_detected(tmp_path):
    image = gradient(200, 200)
    for name in ("t.png", "t.jpg"):
        ok, buf = cv2.imencode(name[-4:], image)
        data = buf.tobytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageReadError, match="truncated"):
            read_image(tmp_path / name)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="cannot be read"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_pixel_limit_refuses_before_decoding(tmp_path):
    write_png(tmp_path / "big.png", np.zeros((300, 400), np.uint8))
    with pytest.raises(ImageReadError, match="over the"):
        read_image(tmp_path / "big.png", max_pixels=100_000)


def test_read_mask_binarises(tmp_path):
    mask = np.array([[0, 100, 128, 255]], np.uint8).repeat(4, 0)
    write_png(tmp_path / "m.png", mask)
    assert read_mask(tmp_path / "m.png")[0].tolist() == [0, 0, 255, 255]


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path):
    atomic_write_bytes(tmp_path / "f.bin", b"one")
    atomic_write_bytes(tmp_path / "f.bin", b"two")
    assert (tmp_path / "f.bin").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_list_images_folder_and_glob(tmp_path):
    for name in ("b.png", "a.jpg", "c.txt", ".hidden.png", "d.DCM"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png", "d.DCM"]
    assert [p.name for p in list_images(str(tmp_path / "*.png"))] == ["b.png"]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os

    atomic_write_bytes(tmp_path / "f.bin", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o666 & ~umask
