"""Attachments (issue 19, point 2): type by content, photos cleaned of EXIF, limits. Pure."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shared.evidence import AttachmentLimits, AttachmentRefused, prepare, safe_name, sniff

LIMITS = AttachmentLimits()
GPS_TAG = 0x8825
MAKE_TAG = 0x010F


def photo_with_exif(fmt: str = "JPEG", size: tuple[int, int] = (1200, 800)) -> bytes:
    """A photo carrying a camera make and a GPS position, rotated by its EXIF orientation."""
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[MAKE_TAG] = "CamaraDeEjemplo"
    exif[0x0112] = 6  # orientation: rotate 90° to show upright
    exif.get_ifd(GPS_TAG)[2] = (8.0, 58.0, 30.0)  # latitude
    out = io.BytesIO()
    image.save(out, format=fmt, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_photo_is_re_encoded_upright_without_exif_and_gets_a_thumbnail(fmt: str) -> None:
    original = photo_with_exif(fmt)
    assert Image.open(io.BytesIO(original)).getexif().get(MAKE_TAG) == "CamaraDeEjemplo"
    [item] = prepare([("C:\\fotos\\hueco.jpg", original)], LIMITS)
    assert item.media_type == f"image/{fmt.lower()}"
    assert item.name == "hueco.jpg"
    cleaned = Image.open(io.BytesIO(item.data))
    assert dict(cleaned.getexif()) == {}
    assert b"CamaraDeEjemplo" not in item.data
    assert cleaned.size == (800, 1200)  # turned upright before the orientation was dropped
    assert item.thumbnail is not None
    thumbnail = Image.open(io.BytesIO(item.thumbnail))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) == 320
    assert dict(thumbnail.getexif()) == {}


def test_the_type_comes_from_the_content_not_the_name() -> None:
    assert sniff(b"%PDF-1.7\n...") == "application/pdf"
    assert sniff(photo_with_exif("PNG")) == "image/png"
    with pytest.raises(AttachmentRefused) as refused:
        prepare([("foto.jpg", b"MZ\x90\x00 an executable")], LIMITS)
    [error] = refused.value.errors
    assert error.rule == "attachment_type"
    assert error.message.startswith("«foto.jpg»: tipo de archivo no admitido")


def test_a_pdf_is_kept_as_sent_without_a_thumbnail() -> None:
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    [item] = prepare([("nota.pdf", pdf)], LIMITS)
    assert (item.media_type, item.data, item.thumbnail) == ("application/pdf", pdf, None)


def test_too_many_too_large_or_broken_files_are_each_named() -> None:
    limits = AttachmentLimits(attachments_max_files=2, attachments_max_megabytes=0.01)
    files = [
        ("a.pdf", b"%PDF-" + b"x" * 20_000),
        ("b.jpg", b"\xff\xd8\xff\xe0 not really a jpeg"),
        ("c.pdf", b"%PDF-1.4"),
    ]
    with pytest.raises(AttachmentRefused) as refused:
        prepare(files, limits)
    rules = [e.rule for e in refused.value.errors]
    assert rules == ["attachments_count", "attachment_size", "attachment_image"]
    assert "como máximo 2 archivos" in refused.value.errors[0].message


def test_a_photo_with_too_many_pixels_is_refused_before_decoding() -> None:
    limits = AttachmentLimits(attachments_max_pixels=1000)
    with pytest.raises(AttachmentRefused):
        prepare([("grande.png", photo_with_exif("PNG", (100, 100)))], limits)


def test_a_file_name_loses_its_path_and_control_characters() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("fo\x00to\n.jpg") == "foto.jpg"
    assert safe_name("") == "adjunto"
