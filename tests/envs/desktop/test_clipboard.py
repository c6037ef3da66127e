"""The clipboard on a real X display: xclip for saving and restoring, our own selection owner for pasting."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from screenpilot.envs.desktop.clipboard import ClipboardContent, SelectionOffer, XClipboard
from screenpilot.envs.desktop.xvfb import XvfbDisplay


@pytest.fixture(scope="module")
def clipboard() -> Iterator[XClipboard]:
    with XvfbDisplay() as display:
        clip = XClipboard(display.name)
        yield clip
        clip.close(stop_daemons=True)


def xclip_out(clip: XClipboard, target: str = "UTF8_STRING") -> bytes:
    return subprocess.run(
        ["xclip", "-display", clip.display, "-selection", "clipboard", "-o", "-t", target],
        capture_output=True,
        timeout=5,
        check=True,
    ).stdout


def test_text_round_trips_and_an_empty_clipboard_has_no_targets(clipboard: XClipboard) -> None:
    clipboard.set_text("Grüße 🙂")
    assert clipboard.get_text() == "Grüße 🙂"
    saved = clipboard.save()
    assert saved == ClipboardContent("UTF8_STRING", "Grüße 🙂".encode())
    clipboard.restore(ClipboardContent(None))
    assert clipboard.targets() == []
    assert clipboard.save() == ClipboardContent(None)
    assert clipboard.get_text() is None
    clipboard.restore(saved)
    assert clipboard.get_text() == "Grüße 🙂"


def test_an_image_on_the_clipboard_is_saved_and_restored_as_an_image(clipboard: XClipboard) -> None:
    png = b"\x89PNG\r\n\x1a\nnot really a picture"
    clipboard.restore(ClipboardContent("image/png", png))
    saved = clipboard.save()
    assert saved == ClipboardContent("image/png", png)
    clipboard.set_text("temporary")
    clipboard.restore(saved)
    assert xclip_out(clipboard, "image/png") == png


def test_an_offer_reports_when_an_app_fetched_the_text(clipboard: XClipboard) -> None:
    offer = clipboard.offer_text("東京 ✓")
    assert isinstance(offer, SelectionOffer)
    try:
        assert offer.wait(0.1) is False  # nobody asked yet
        assert b"UTF8_STRING" in xclip_out(clipboard, "TARGETS")
        assert offer.wait(0.1) is False  # a TARGETS request is not a delivery
        assert xclip_out(clipboard).decode() == "東京 ✓"
        assert offer.wait(1.0) is True
        assert xclip_out(clipboard, "STRING") == b"?? ?"  # STRING is Latin-1
    finally:
        clipboard.set_text("after")  # taking the clipboard ends the offer's service
        t0 = time.monotonic()
        offer.close()
        assert time.monotonic() - t0 < 1.0
    assert clipboard.get_text() == "after"
