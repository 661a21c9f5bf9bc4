"""line_plot's band and the figures' text, read back from the PNG with Pillow.

`line_plot(series, x, y, low, high [, title])` fills the area between low
and high in a light tint of the series' colour under its line; a NULL low
or high leaves that point without band; NaN/inf ends and low > high are
errors. The checks locate the plot frame and the curve in the picture and
measure where the tint is, so they depend only on the figure's documented
geometry (category x positions evenly spaced inside the frame), not on the
renderer's code. Text must be antialiased: a title drawn with more than two
grey levels.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

# The first colour of matplotlib's tab10 cycle: the first series' colour.
BLUE = np.array([31, 119, 180], dtype=float)
WHITE = np.array([255, 255, 255], dtype=float)

# One series with a band at points 0..4, none at 5..7 (NULL high at 5,
# both NULL at 6 and 7); a second series with no band at all.
Y = [0.90, 0.80, 0.62, 0.50, 0.42, 0.35, 0.30, 0.22]
LOW = [0.80, 0.66, 0.50, 0.42, 0.30, 0.30, None, None]
HIGH = [0.98, 0.88, 0.72, 0.60, 0.50, None, None, None]
N = len(Y)


def sql_value(v) -> str:
    return "NULL" if v is None else repr(float(v))


def band_rows() -> str:
    rows = [f"('to input', 'L{i}', {i}, {Y[i]!r}, {sql_value(LOW[i])}, {sql_value(HIGH[i])})"
            for i in range(N)]
    rows += [f"('to logits', 'L{i}', {i}, {-0.4 + 0.05 * i!r}, NULL, NULL)" for i in range(N)]
    return "VALUES " + ", ".join(rows)


def render(con, title: str = "Similarity with 95% interval") -> np.ndarray:
    png = con.execute(
        f"""SELECT line_plot(s, x, y, lo, hi, '{title}' ORDER BY pos)
            FROM ({band_rows()}) t(s, x, pos, y, lo, hi)"""
    ).fetchone()[0]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)


def frame(img: np.ndarray) -> tuple[int, int, int, int]:
    """Top, bottom, left, right of the plot frame: the long dark lines."""
    dark = img.max(axis=2) < 80
    rows = np.flatnonzero(dark.sum(axis=1) > 0.4 * img.shape[1])
    cols = np.flatnonzero(dark.sum(axis=0) > 0.3 * img.shape[0])
    assert len(rows) >= 2 and len(cols) >= 2, "no plot frame found"
    return rows.min(), rows.max(), cols.min(), cols.max()


def tint(img: np.ndarray) -> np.ndarray:
    """Per pixel, how far it lies from white towards BLUE (0 white, 1 blue),
    NaN where the colour is not on that line."""
    d = WHITE - BLUE
    t = ((WHITE - img) @ d) / (d @ d)
    off = np.linalg.norm(WHITE - img - t[..., None] * d, axis=2)
    return np.where(off < 6.0, t, np.nan)


def column_profile(t_col: np.ndarray, top: int, bottom: int):
    """In one pixel column inside the frame: the curve's centre (rows with
    nearly full blue) and the band rows (a light tint) that lie more than
    3 px from the curve, so the line's antialiased edge is not counted."""
    rows = np.arange(top + 2, bottom - 1)
    t = t_col[rows]
    core = rows[np.nan_to_num(t) > 0.8]
    light = rows[(t > 0.1) & (t < 0.45)]
    if len(core):
        light = light[np.min(np.abs(light[:, None] - core[None, :]), axis=1) > 3]
    return core, light


@pytest.fixture
def picture(con):
    img = render(con)
    top, bottom, left, right = frame(img)
    t = tint(img)
    pitch = (right - left) / N
    xs = [int(round(left + (i + 0.5) * pitch)) for i in range(N)]
    return img, t, (top, bottom, left, right), xs, pitch


def test_band_lies_between_low_and_high(picture):
    img, t, (top, bottom, _, _), xs, _ = picture
    curve, band = {}, {}
    for i in range(5):
        # Two pixels inside the band's run, which starts and ends at points.
        x = xs[i] + 2 if i < 4 else xs[i] - 2
        core, light = column_profile(t[:, x], top, bottom)
        assert len(core), f"no curve at point {i}"
        assert len(light) > 4, f"no band at point {i} (column {x})"
        curve[i] = core.mean()
        band[i] = (light.min(), light.max())
    # Pixels per unit of y from the curve itself (points 0 and 4).
    k = (curve[4] - curve[0]) / (Y[0] - Y[4])
    assert k > 50, f"implausible scale {k} px per unit"
    for i in range(5):
        want_top = curve[i] - k * (HIGH[i] - Y[i])
        want_bottom = curve[i] + k * (Y[i] - LOW[i])
        got_top, got_bottom = band[i]
        assert abs(got_top - want_top) <= 3, f"point {i}: band top {got_top}, high at {want_top:.1f}"
        assert abs(got_bottom - want_bottom) <= 3, \
            f"point {i}: band bottom {got_bottom}, low at {want_bottom:.1f}"


def test_no_band_where_low_or_high_is_null(picture):
    _, t, (top, bottom, _, right), xs, pitch = picture
    # From just beyond the last banded point's marker to the frame, away
    # from the markers (whose antialiased rims are light blue too).
    for x in range(xs[4] + 8, right - 2):
        if min(abs(x - p) for p in xs) < 8:
            continue
        _, light = column_profile(t[:, x], top, bottom)
        assert len(light) == 0, f"band pixels at column {x}, right of the last banded point"
    # The second series has no band anywhere: no light orange in the plot.
    orange = np.array([255, 127, 14], dtype=float)
    d = WHITE - orange
    img = picture[0][top + 2:bottom - 1, xs[0] - 2:right - 2]
    tt = ((WHITE - img) @ d) / (d @ d)
    off = np.linalg.norm(WHITE - img - tt[..., None] * d, axis=2)
    light = (off < 6) & (tt > 0.1) & (tt < 0.45)
    full = (off < 6) & (tt > 0.8)
    # Only the antialiased edge of the orange line: few light pixels per line pixel.
    assert light.sum() < 1.5 * full.sum(), (light.sum(), full.sum())


def test_text_is_antialiased(picture):
    img, _, (top, _, _, _), _, _ = picture
    title = img[: max(top - 8, 1)]
    grey = title[(title[..., 0] == title[..., 1]) & (title[..., 1] == title[..., 2])][:, 0]
    levels = np.unique(grey)
    assert len(levels) > 2, f"title has only grey levels {levels}"
    assert (grey < 100).any(), "title has no dark pixels"
    assert ((grey > 100) & (grey < 230)).sum() > 30, "title edges are not antialiased"


def test_band_errors_name_the_value(con):
    def err(lo, hi) -> str:
        with pytest.raises(Exception) as e:
            con.execute(
                f"SELECT line_plot('a', x, y, {lo}, {hi}) "
                "FROM (VALUES ('L0', 0.5), ('L1', 0.4)) t(x, y)"
            ).fetchone()
        return str(e.value)

    msg = err("0.6", "0.55")
    assert "above high" in msg and "0.6" in msg and "'a'" in msg, msg
    msg = err("'NaN'::DOUBLE", "0.9")
    assert "low is NaN" in msg, msg
    msg = err("0.1", "'inf'::DOUBLE")
    assert "high is inf" in msg, msg


def test_all_overloads_draw(con):
    src = "FROM (VALUES ('a', 'L0', 0.5), ('a', 'L1', 0.4)) t(s, x, y)"
    for call in ["line_plot(s, x, y)", "line_plot(s, x, y, 'title')",
                 "line_plot(s, x, y, y - 0.1, y + 0.1)", "line_plot(s, x, y, y - 0.1, y + 0.1, 't')",
                 "line_plot(s, x, y, NULL, NULL)"]:
        png = con.execute(f"SELECT {call} {src}").fetchone()[0]
        img = Image.open(io.BytesIO(png))
        assert img.size[0] > 400 and img.size[1] > 300, call


def test_band_colour_is_a_tint_of_the_line(picture):
    """The band is translucent: lighter than the line, same hue."""
    _, t, (top, bottom, _, _), xs, _ = picture
    _, light = column_profile(t[:, xs[1]], top, bottom)
    values = t[light, xs[1]]
    assert 0.1 < np.median(values) < 0.45 and not math.isnan(np.median(values))
