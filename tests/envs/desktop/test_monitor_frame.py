"""Device pixels -> the desktop's logical points, for monitor layouts Xvfb cannot show (HiDPI, offsets)."""

from __future__ import annotations

import pytest

from screenpilot.actions.coords import Size
from screenpilot.envs.desktop import PointOutsideScreenError
from screenpilot.envs.desktop.env import MonitorFrame


def test_a_plain_primary_monitor_maps_one_to_one() -> None:
    frame = MonitorFrame(0, 0, Size(1280, 800), Size(1280, 800))
    assert frame.to_logical(0, 0) == (0, 0)
    assert frame.to_logical(1279, 799) == (1279, 799)
    assert frame.scale == (1.0, 1.0)


def test_a_retina_screen_has_two_pixels_per_point() -> None:
    frame = MonitorFrame(0, 0, Size(2880, 1800), Size(1440, 900))
    assert frame.scale == (2.0, 2.0)
    assert frame.to_logical(100, 201) == (50, 100)
    assert frame.to_logical(2879, 1799) == (1439, 899)  # still on this monitor


def test_a_second_monitor_left_of_and_above_the_primary_is_offset() -> None:
    frame = MonitorFrame(-1920, -200, Size(1920, 1080), Size(1920, 1080))
    assert frame.to_logical(0, 0) == (-1920, -200)
    assert frame.to_logical(1919, 1079) == (-1, 879)


def test_a_hidpi_monitor_right_of_the_primary() -> None:
    frame = MonitorFrame(1440, 0, Size(3840, 2160), Size(2560, 1440))  # 150 % scaling
    assert frame.to_logical(3000, 1500) == (1440 + 2000, 1000)


@pytest.mark.parametrize("point", [(-1, 0), (0, -1), (1280, 0), (0, 800)])
def test_points_off_the_monitor_are_refused(point: tuple[int, int]) -> None:
    frame = MonitorFrame(0, 0, Size(1280, 800), Size(1280, 800))
    with pytest.raises(PointOutsideScreenError, match="1280x800"):
        frame.to_logical(*point)
