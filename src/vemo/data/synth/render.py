"""Drawing the synthetic faces: geometry of the moving parts, static layers (background, head sprite),
the per-frame scene and the camera (lighting, white balance, blur, sensor noise).

`render_clip` renders a clip; `clip_params` (params.py) + `render_params` render one with edited
parameters (e.g. `au` zeroed: the very same clip without its expression) and `head_point` says where a
face point lands in the frame; the tests use them to check that expressions change the face only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vemo.config import SynthConfig
from vemo.data.synth.params import (
    _I,
    AUS,
    ClipParams,
    Identity,
    _exposure,
    _smoothstep,
    actor_identity,
    au_at,
    blink,
    clip_params,
    talk,
)

# Drawing scale. 1: draw at the target size (LINE_AA with 4-bit sub-pixel coordinates anti-aliases well
# enough at 160x120); 2: draw at twice the size and downscale with INTER_AREA, a little crisper, ~2x slower.
SS = 1


# ------------------------------------------------------------------------------------------- geometry


@lru_cache(maxsize=64)
def _lin(n: int) -> np.ndarray:
    """n evenly spaced values in [0, 1], cached (read-only): curves are rebuilt every frame."""
    out = np.linspace(0.0, 1.0, n)
    out.setflags(write=False)
    return out


def _curve(a: tuple[float, float], b: tuple[float, float], bulge: float, n: int = 9, power: float = 1.0) -> np.ndarray:
    """Points from a to b, pushed by `bulge` (head units, + = down) in the middle."""
    s = _lin(n)
    out = np.empty((n, 2))
    out[:, 0] = a[0] + (b[0] - a[0]) * s
    out[:, 1] = a[1] + (b[1] - a[1]) * s + bulge * (1 - (2 * s - 1) ** 2) ** power
    return out


def _lip_curve(w: float, yc: float, ymid: float, q: float, bow: float = 0.0, n: int = 15) -> np.ndarray:
    """A lip edge from the left corner (-w, yc) to the right one, through (0, ymid) in the middle."""
    s = _lin(n) * 2 - 1
    y = yc + (ymid - yc) * (1 - np.abs(s) ** q) + bow * np.exp(-((s / 0.14) ** 2))
    return np.stack([w * s, y], 1)


def _ellipse_pts(cx: float, cy: float, ax: float, ay: float, n: int = 16) -> np.ndarray:
    t = _lin(n + 1)[:-1] * (2 * np.pi)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], 1)


def _brow(I: Identity, a: np.ndarray, sgn: int) -> np.ndarray:
    """Brow polygon: AU1 lifts the inner end, AU2 the outer part, AU4 pulls it down and inwards."""
    ex, by = sgn * I.eye_dx, I.eye_y - I.brow_gap
    a1, a2, a4, a9 = a[_I["AU1"]], a[_I["AU2"]], a[_I["AU4"]], a[_I["AU9"]]
    inner = (ex - sgn * (I.eye_w * 1.0 - 0.045 * a4), by + 0.015 - 0.11 * a1 + 0.075 * a4 + 0.02 * a9)
    mid = (ex + sgn * 0.2 * I.eye_w, by - I.brow_arch - 0.05 * a1 - 0.09 * a2 + 0.05 * a4)
    outer = (ex + sgn * 1.35 * I.eye_w, by + 0.02 - 0.01 * a1 - 0.1 * a2 + 0.02 * a4)
    s = _lin(9)[:, None]
    m = 0.45  # quadratic through inner (s=0), mid (s=m), outer (s=1)
    p0, p1, p2 = (np.array(v) for v in (inner, mid, outer))
    pts = p0 * (s - m) * (s - 1) / m + p1 * s * (s - 1) / (m * (m - 1)) + p2 * s * (s - m) / (1 - m)
    half = I.brow_thick * (0.62 - 0.35 * s[:, 0])
    top = pts - np.stack([np.zeros_like(half), half], 1)
    bottom = pts + np.stack([np.zeros_like(half), half], 1)
    return np.concatenate([top, bottom[::-1]])


def _eye(I: Identity, a: np.ndarray, sgn: int, blink_amt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper and lower lid curves (inner to outer) of one eye, and the eye opening polygon."""
    ex, ey = sgn * I.eye_dx, I.eye_y
    inner = (ex - sgn * I.eye_w, ey + 0.01)
    outer = (ex + sgn * I.eye_w, ey - I.eye_tilt * I.eye_w * 0.3)
    a5, a6, a7, a43 = a[_I["AU5"]], a[_I["AU6"]], a[_I["AU7"]], a[_I["AU43"]]
    up = I.eye_h * (1 + 1.0 * a5 - 0.5 * a7 - 0.7 * a43 - 0.2 * a6) * (1 - blink_amt)
    lo = I.eye_h * 0.55 * (1 - 0.6 * a6 - 0.55 * a7 + 0.2 * a5) * (1 - 0.5 * blink_amt)
    upper = _curve(inner, outer, -max(up, 0.004), power=0.8)
    lower = _curve(inner, outer, max(lo, 0.004), power=1.0)
    return upper, lower, np.concatenate([upper, lower[::-1]])


@dataclass
class _Mouth:
    outer_up: np.ndarray
    inner_up: np.ndarray
    inner_lo: np.ndarray
    outer_lo: np.ndarray
    width: float
    corner_y: float
    gap: float


def _mouth(I: Identity, a: np.ndarray, jaw: float) -> _Mouth:
    """Lip edges. AU12 lifts and widens the corners, AU15 lowers them, AU20 stretches and thins the lips,
    AU24 presses them thin and damps opening, AU10 lifts the upper lip (teeth show), jaw opens."""
    a10, a12, a15, a20, a24 = (a[_I[k]] for k in ("AU10", "AU12", "AU15", "AU20", "AU24"))
    jaw = min(1.3, max(0.0, jaw)) * (1 - 0.6 * a24)
    gap = 0.15 * jaw
    ym = I.mouth_y
    w = I.mouth_w * (1 + 0.15 * a12 + 0.24 * a20 - 0.1 * a24 + 0.04 * a15 - 0.06 * jaw)
    yc = ym + 0.06 * a15 - 0.07 * a12 + 0.015 * a20 - 0.012 * a10 + 0.3 * gap
    y_ui = ym - 0.045 * a10 - 0.1 * gap
    y_uo = y_ui - I.upper_lip * (1 - 0.6 * a24 - 0.25 * a20 - 0.2 * a12)
    y_li = ym + 0.9 * gap
    y_lo = y_li + I.lower_lip * (1 - 0.55 * a24 - 0.2 * a20 - 0.1 * a12)
    return _Mouth(
        outer_up=_lip_curve(w, yc, y_uo, 1.7, bow=0.35 * I.upper_lip),
        inner_up=_lip_curve(w, yc, y_ui, 2.2),
        inner_lo=_lip_curve(w, yc, y_li, 2.2),
        outer_lo=_lip_curve(w, yc, y_lo, 1.6),
        width=w, corner_y=yc, gap=gap,
    )  # fmt: skip


def _creases(I: Identity, a: np.ndarray, m: _Mouth, lids: list) -> list[tuple[np.ndarray, float]]:
    """Wrinkles and folds as (polyline, darkness): they appear and deepen with the AUs that cause them.
    Kept faint: at 160x120 they are cues a model can pick up, not labels painted on the face."""
    g = {k: float(a[_I[k]]) for k in AUS}
    ey, ny, by = I.eye_y, I.nose_y, I.eye_y - I.brow_gap
    out: list[tuple[np.ndarray, float]] = []

    def add(dark: float, make) -> None:  # geometry is only built for creases that show
        if dark > 0.01:
            out.append((make(), dark))

    lateral = g["AU2"] / max(1e-3, g["AU1"] + g["AU2"])  # AU2 wrinkles the whole forehead, AU1 its centre
    span = 0.14 + 0.2 * lateral
    for k in range(3):
        y = by - 0.08 - 0.055 * k
        add(
            0.22 * g["AU1"] + 0.18 * g["AU2"],
            lambda y=y: _curve((-span, y), (span, y), 0.015 - 0.03 * lateral),
        )
    for k in range(2):
        y = ey + 0.04 + 0.04 * k
        add(0.32 * g["AU9"], lambda y=y: _curve((-0.05, y), (0.05, y), -0.01))
    for sgn in (-1, 1):
        add(0.38 * g["AU4"], lambda s=sgn: np.array([[s * 0.035, by - 0.02], [s * 0.03, by + 0.05]]))
        add(0.3 * g["AU9"], lambda s=sgn: np.array([[s * 0.045, ey + 0.02], [s * 0.09, ey + 0.1]]))
        wing = ((sgn * I.nose_w * 0.3, ny + 0.02), (sgn * I.nose_w * 1.05, ny - 0.05))
        add(0.25 + 0.15 * g["AU9"], lambda w=wing: _curve(*w, 0.035))
        fold = (
            (sgn * I.nose_w * 1.05, ny - 0.05),
            (sgn * (m.width + 0.05 + 0.03 * g["AU12"]), m.corner_y + 0.06),
        )
        deep = 0.08 + 0.3 * g["AU12"] + 0.25 * g["AU10"] + 0.2 * g["AU9"] + 0.1 * g["AU20"]
        add(min(0.45, deep), lambda f=fold, s=sgn: _curve(*f, 0.0, n=7) + _FOLD_BOW * (s, 0))
        c = (sgn * m.width, m.corner_y)
        add(0.3 * g["AU15"], lambda c=c, s=sgn: np.array([c, [c[0] + s * 0.02, c[1] + 0.09]]))
    lid_lift = np.array([0.0, -0.035 - 0.02 * g["AU5"] + 0.015 * g["AU43"]])
    for upper, lower in lids:
        add(0.15 + 0.1 * g["AU43"], lambda u=upper: u + lid_lift)
        add(0.3 * g["AU6"] + 0.1 * g["AU7"], lambda lo=lower: lo + (0.0, 0.04))
    return out


_FOLD_BOW = 0.03 * np.sin(np.linspace(0, np.pi, 7))[:, None]  # nasolabial folds bow outwards


# ------------------------------------------------------------------------------------ static layers


def _grid(h: int, w: int, cx: float, cy: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return (xs - cx) / s, (ys - cy) / s


def _blob(u: np.ndarray, v: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((u - cx) / sx) ** 2 + ((v - cy) / sy) ** 2))


def _soft(d: np.ndarray, s: float) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in head units (positive inside)."""
    return np.clip(d * s + 0.5, 0.0, 1.0)


def _over(rgb: np.ndarray, alpha: np.ndarray, color: np.ndarray, cover: np.ndarray) -> None:
    """Premultiplied 'over' compositing, in place."""
    c = cover[..., None]
    rgb *= 1 - c
    rgb += c * color
    alpha *= 1 - cover
    alpha += cover


def _skin_shade(I: Identity, u: np.ndarray, v: np.ndarray, r: np.ndarray, light: tuple[float, float]):
    """Shading that makes the flat ellipse read as a face: dark eye sockets and nose sides, a lit nose
    bridge and cheekbones, shadow under nose and lip, darker rim. (Also what Haar cascades key on.)"""
    ang, k = light
    shade = 1 - 0.2 * np.clip(r, 0, 1) ** 3 + k * 0.5 * (np.cos(ang) * u / I.aspect + np.sin(ang) * v)
    ey, ny, my = I.eye_y, I.nose_y, I.mouth_y
    for sgn in (-1, 1):
        shade -= 0.4 * _blob(u, v, sgn * I.eye_dx, ey - 0.015, I.eye_w * 1.25, I.eye_h * 2.4)
        shade -= 0.1 * _blob(u, v, sgn * I.nose_w * 0.85, ey + I.nose_len * 0.6, 0.035, I.nose_len * 0.3)
        shade += 0.06 * _blob(u, v, sgn * 0.5 * I.aspect, ey + 0.19, 0.12, 0.07)
    shade += 0.07 * _blob(u, v, 0.0, ey + I.nose_len * 0.45, 0.03, I.nose_len * 0.35)
    shade += 0.06 * _blob(u, v, 0.0, ny - 0.035, 0.04, 0.03)
    shade -= 0.2 * _blob(u, v, 0.0, ny + 0.04, I.nose_w * 0.9, 0.028)
    shade -= 0.06 * _blob(u, v, 0.0, (ny + my) / 2, 0.02, 0.04)
    shade -= 0.13 * _blob(u, v, 0.0, my + I.lower_lip + 0.07, I.mouth_w * 0.6, 0.035)
    return shade


def _head_sprite(I: Identity, p: ClipParams, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour and alpha (float32) of the static head (ears, skin shading, hair) at s px per unit, and
    the pixel position of the head centre in it. Built once per clip, warped every frame."""
    ext_x, top, bottom = 1.45, 1.3, 1.45
    h, w = int(np.ceil((top + bottom) * s)), int(np.ceil(2 * ext_x * s))
    c = np.array([ext_x * s, top * s], np.float32)
    u, v = _grid(h, w, c[0], c[1], s)
    rgb, alpha = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    rng = np.random.default_rng(p.bg_seed + 1)
    strands = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.0)
    hair = I.hair * (1 + 0.15 * strands)[..., None]
    if I.hair_style == 2:
        long = 1 - np.sqrt((u / (I.aspect * 1.25)) ** 2 + ((v - 0.1) / 1.22) ** 2)
        neck = np.maximum(np.abs(u) - I.aspect * 0.6, 0.5 - v)  # no hair in front of the neck
        _over(rgb, alpha, hair * 0.8, _soft(np.minimum(np.minimum(long, (1.25 - v) * 0.5), neck), s))
    for sgn in (-1, 1):
        ear = 1 - np.sqrt(((u - sgn * I.aspect * 0.97) / 0.09) ** 2 + ((v - I.eye_y - 0.14) / 0.17) ** 2)
        _over(rgb, alpha, I.skin * 0.86, _soft(ear * 0.09, s))
    half_w = I.aspect * (1 - I.jaw_taper * np.clip(v, 0, 1) ** 2)
    r = np.sqrt((u / half_w) ** 2 + v**2)
    skin = I.skin * _skin_shade(I, u, v, r, p.face_light)[..., None]
    _over(rgb, alpha, skin, _soft((1 - r) * 0.8, s))
    cap = 1 - np.sqrt((u / (I.aspect * 1.07)) ** 2 + ((v + 0.03) / 1.07) ** 2)
    line = I.hairline + (0.38 if I.hair_style else 0.2) * (u / I.aspect) ** 2 - 0.12 * (I.hair_style == 0)
    cover = _soft(np.minimum(cap, line - v), s)
    if I.hair_style == 0:
        cover *= 0.55
    _over(rgb, alpha, hair, cover)
    # straight (not premultiplied) colour for cv2.blendLinear; where nothing is drawn use the skin colour,
    # so that interpolation at the silhouette does not pull in black
    straight = np.where(alpha[..., None] > 1e-3, rgb / np.maximum(alpha, 1e-3)[..., None], I.skin * 0.8)
    return straight.astype(np.float32), alpha.astype(np.float32), c


def _background(cfg: SynthConfig, I: Identity, p: ClipParams) -> np.ndarray:
    """Per-clip backdrop at SS x size: gradient, blurred blobs, texture, then neck and shoulders."""
    rng = np.random.default_rng(p.bg_seed)
    W, H = cfg.width, cfg.height
    small_w, small_h = max(8, W // 4), max(6, H // 4)
    u, v = _grid(small_h, small_w, small_w / 2, small_h / 2, max(small_w, small_h) / 2)
    ang = rng.uniform(0, 2 * np.pi)
    c1, c2 = (rng.uniform(40, 220) + rng.normal(0, 22, 3) for _ in range(2))  # muted, like rooms
    t = np.clip(0.5 + 0.5 * (np.cos(ang) * u + np.sin(ang) * v), 0, 1)[..., None]
    img = c1 * (1 - t) + c2 * t
    for _ in range(int(rng.integers(2, 8))):
        blob = _blob(u, v, rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.5))
        img += blob[..., None] * (rng.uniform(-70, 70) + rng.normal(0, 20, 3))
    img += cv2.resize(rng.normal(0, rng.uniform(5, 20), (4, 5, 3)), (small_w, small_h), interpolation=cv2.INTER_CUBIC)
    img = cv2.resize(img.astype(np.float32), (W * SS, H * SS), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.4:  # a door frame / shelf edge: strong straight edges away from the face
        x = int(rng.choice([rng.uniform(0.02, 0.18), rng.uniform(0.82, 0.98)]) * W * SS)
        img[:, x : x + int(rng.integers(2, 10))] *= rng.uniform(0.5, 1.4)
    fine = rng.normal(0, rng.uniform(0, 6), (H, W, 1)).astype(np.float32)
    img += cv2.resize(fine, (W * SS, H * SS), interpolation=cv2.INTER_LINEAR)[..., None]
    out = np.clip(img / _exposure(I), 0, 255).astype(np.uint8)  # the camera gain brings it back to range
    _draw_body(out, I, p, rng)
    return out


def _draw_body(img: np.ndarray, I: Identity, p: ClipParams, rng: np.random.Generator) -> None:
    """Neck and shoulders at the head's resting place (they do not follow the small head motion)."""
    T = np.array([p.center[0] * SS + (SS - 1) / 2, p.center[1] * SS + (SS - 1) / 2])
    s = p.scale * SS
    shirt = rng.uniform(20, 220, 3)
    shoulders = _ellipse_pts(0, 1.95, I.aspect * 2.5, 0.75, 32) * s + T
    cv2.fillPoly(img, [_q(shoulders)], shirt.tolist(), cv2.LINE_AA, 4)
    nw = I.aspect * 0.45
    neck = np.array([[-nw, 0.4], [nw, 0.4], [nw * 1.1, 1.35], [0, 1.45], [-nw * 1.1, 1.35]]) * s + T
    cv2.fillPoly(img, [_q(neck)], (I.skin * 0.72).tolist(), cv2.LINE_AA, 4)


# ------------------------------------------------------------------------------------------ rendering


def _q(pts: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 with 4 fractional bits (cv2 `shift=4`): sub-pixel drawing."""
    return np.rint(pts * 16).astype(np.int32)


def _pose(p: ClipParams, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, T): head units -> drawing pixels at frame i, p_img = A @ p_unit + T (drift, sway, tilt, zoom)."""
    t = i / max(1, p.n_frames - 1)
    ax, fx, px, ay, fy, py = p.motion
    cx = p.center[0] + ax * np.sin(2 * np.pi * fx * t + px)
    cy = p.center[1] + ay * np.sin(2 * np.pi * fy * t + py)
    rest, amp, f, ph = p.rot
    th = np.deg2rad(rest + amp * np.sin(2 * np.pi * f * t + ph))
    s = p.scale * SS * (1 + p.zoom * t)
    A = s * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return A, np.array([cx * SS + (SS - 1) / 2, cy * SS + (SS - 1) / 2])


class _Scene:
    """One clip's renderer: static layers are built once; `frame(i)` draws the moving parts."""

    def __init__(self, cfg: SynthConfig, I: Identity, p: ClipParams) -> None:
        self.cfg, self.I, self.p = cfg, I, p
        self.W2, self.H2 = cfg.width * SS, cfg.height * SS
        self.bg = _background(cfg, I, p)
        self.sprite, self.sprite_alpha, self.sprite_c = _head_sprite(I, p, p.scale * SS)
        self.sclera = np.minimum((196, 190, 184), I.skin * 1.3 + 30).astype(np.uint8)  # in lid shadow
        colors = {
            "brow": I.brow_color,
            "nostril": I.skin * 0.38,
            "lower_lip": I.lip,
            "upper_lip": I.lip * 0.82,
            "lip_line": I.lip * 0.4,
            "iris": I.iris,
            "lash": I.brow_color * 0.5,
            "lower_lid": I.skin * 0.6,
        }
        self.colors = {k: tuple(float(c) for c in v) for k, v in colors.items()}
        self.noise_rng = np.random.default_rng(p.noise_seed)
        h, w = cfg.height, cfg.width
        # Sensor noise: each frame takes a randomly shifted window of one field a little larger than the
        # frame, so the pattern never sticks to the image; far cheaper than fresh noise. +0.5: rounding.
        self.noise = self.noise_rng.standard_normal((h + 32, w + 32, 3), dtype=np.float32) * p.noise + 0.5
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        white = np.array(p.white, np.float32)
        self.white = np.broadcast_to(white, (h, w, 3)).copy()
        self.gx = (xs / w * 2 - 1)[..., None] * white
        self.gy = (ys / h * 2 - 1)[..., None] * white

    def frame(self, i: int) -> np.ndarray:
        p, I = self.p, self.I
        sec, t = i / p.fps, i / max(1, p.n_frames - 1)
        a = au_at(p, i)
        A, T = _pose(p, i)
        canvas = self.bg.copy()
        mouth = _mouth(I, a, talk(p, sec) + 0.9 * a[_I["AU26"]])
        eyes = [_eye(I, a, sgn, blink(p, sec)) for sgn in (-1, 1)]
        self._paste_head(canvas, A, T, _creases(I, a, mouth, [e[:2] for e in eyes]))
        to_img = lambda pts: pts @ A.T + T  # noqa: E731
        self._draw_nose(canvas, a, to_img)
        self._draw_mouth(canvas, mouth, to_img)
        gaze = np.array(p.gaze[:2]) * (1 - t) + np.array(p.gaze[2:]) * t
        self._draw_eyes(canvas, eyes, gaze, to_img)
        brows = [_q(to_img(_brow(I, a, sgn))) for sgn in (-1, 1)]
        cv2.fillPoly(canvas, brows, self.colors["brow"], cv2.LINE_AA, 4)
        return self._camera(canvas, t)

    def _paste_head(self, canvas: np.ndarray, A: np.ndarray, T: np.ndarray, creases: list) -> None:
        """Warp the head sprite into place, then darken the creases (multiplicatively, so skin shading
        shows through a wrinkle instead of a flat painted line)."""
        h, w = self.sprite.shape[:2]
        L = A / (self.p.scale * SS)
        M = np.hstack([L, (T - L @ self.sprite_c)[:, None]])
        corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ L.T + M[:, 2]
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
        x1 = min(self.W2, int(np.ceil(corners[:, 0].max())) + 1)
        y1 = min(self.H2, int(np.ceil(corners[:, 1].max())) + 1)
        M[:, 2] -= (x0, y0)
        size = (x1 - x0, y1 - y0)
        rgb = cv2.warpAffine(self.sprite, M, size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(self.sprite_alpha, M, size, flags=cv2.INTER_LINEAR)
        roi = canvas[y0:y1, x0:x1]
        out = cv2.blendLinear(rgb, roi.astype(np.float32), alpha, 1 - alpha)
        layer = np.zeros(alpha.shape, np.uint8)
        off = T - (x0, y0)
        by_shade: dict[int, list[np.ndarray]] = {}  # one cv2 call per darkness (left/right pairs share it)
        for pts, dark in creases:
            by_shade.setdefault(round(255 * min(dark, 0.9)), []).append(_q(pts @ A.T + off))
        for shade, lines in by_shade.items():
            cv2.polylines(layer, lines, False, shade, SS, cv2.LINE_AA, 4)
        out -= cv2.multiply(out, cv2.merge([layer] * 3), scale=1 / 255, dtype=cv2.CV_32F)
        roi[:] = cv2.convertScaleAbs(out)

    def _draw_nose(self, canvas: np.ndarray, a: np.ndarray, to_img) -> None:
        """Nostrils; AU9 and AU10 lift and flare them."""
        I = self.I
        lift = 0.015 * a[_I["AU9"]] + 0.01 * a[_I["AU10"]]
        flare = 1 + 0.2 * a[_I["AU9"]]
        nostrils = [
            _q(to_img(_ellipse_pts(sgn * I.nose_w * 0.5, I.nose_y - lift, 0.032 * flare, 0.016, 10))) for sgn in (-1, 1)
        ]
        cv2.fillPoly(canvas, nostrils, self.colors["nostril"], cv2.LINE_AA, 4)

    def _draw_mouth(self, canvas: np.ndarray, m: _Mouth, to_img) -> None:
        """Mouth cavity and upper teeth (when open), then the lips over them, then the lip line."""
        col = self.colors
        if m.gap + (m.inner_lo[7, 1] - m.inner_up[7, 1]) > 0.004:
            cavity = np.concatenate([m.inner_up, m.inner_lo[::-1]])
            cv2.fillPoly(canvas, [_q(to_img(cavity))], (60, 22, 28), cv2.LINE_AA, 4)
            teeth = m.inner_up[3:12]
            band = np.concatenate([teeth, teeth[::-1] + (0.0, 0.04)])  # the lower lip covers any overflow
            cv2.fillPoly(canvas, [_q(to_img(band))], (214, 208, 196), cv2.LINE_AA, 4)
        lower = np.concatenate([m.inner_lo, m.outer_lo[::-1]])
        cv2.fillPoly(canvas, [_q(to_img(lower))], col["lower_lip"], cv2.LINE_AA, 4)
        upper = np.concatenate([m.outer_up, m.inner_up[::-1]])
        cv2.fillPoly(canvas, [_q(to_img(upper))], col["upper_lip"], cv2.LINE_AA, 4)
        cv2.polylines(canvas, [_q(to_img(m.inner_up))], False, col["lip_line"], SS, cv2.LINE_AA, 4)

    def _draw_eyes(self, canvas: np.ndarray, eyes: list, gaze: np.ndarray, to_img) -> None:
        """Sclera and irises clipped to the lid openings (drawn in one small patch), then lash lines."""
        I = self.I
        polys = [to_img(e[2]) for e in eyes]
        both = np.concatenate(polys)
        x0, y0 = np.maximum(np.floor(both.min(0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(both.max(0)).astype(int) + 3, (self.W2, self.H2))
        if x1 <= x0 or y1 <= y0:
            return
        patch = canvas[y0:y1, x0:x1]
        layer = np.empty_like(patch)
        layer[:] = self.sclera
        iris_y = I.eye_y + 0.1 * I.eye_h + gaze[1] * 0.2 * I.eye_h
        iris = np.array([[sgn * I.eye_dx + gaze[0] * I.eye_w * 0.35, iris_y] for sgn in (-1, 1)])
        r_iris = I.eye_h * 0.95 * self.p.scale * SS
        for c in _q(to_img(iris) - (x0, y0)):
            cv2.circle(layer, tuple(c), int(r_iris * 16), self.colors["iris"], -1, cv2.LINE_AA, 4)
            cv2.circle(layer, tuple(c), int(r_iris * 7), (15, 12, 12), -1, cv2.LINE_AA, 4)
        mask = np.zeros(patch.shape[:2], np.uint8)
        cv2.fillPoly(mask, [_q(poly - (x0, y0)) for poly in polys], 255, cv2.LINE_AA, 4)
        k = mask.astype(np.float32) * (1 / 255)
        patch[:] = cv2.blendLinear(layer, patch, k, 1 - k)
        cv2.polylines(canvas, [_q(to_img(e[0])) for e in eyes], False, self.colors["lash"], SS, cv2.LINE_AA, 4)
        cv2.polylines(canvas, [_q(to_img(e[1])) for e in eyes], False, self.colors["lower_lid"], 1, cv2.LINE_AA, 4)

    def _camera(self, canvas: np.ndarray, t: float) -> np.ndarray:
        """Downscale, then lighting (gain + directional gradient), white balance, blur and sensor noise."""
        p = self.p
        small = canvas
        if SS > 1:
            small = cv2.resize(canvas, (self.cfg.width, self.cfg.height), interpolation=cv2.INTER_AREA)
        gain = p.gain[0] + (p.gain[1] - p.gain[0]) * _smoothstep(t)
        sx = p.shade[0] + (p.shade[2] - p.shade[0]) * t
        sy = p.shade[1] + (p.shade[3] - p.shade[1]) * t
        light = cv2.addWeighted(self.gx, gain * sx, self.gy, gain * sy, 0.0)
        light = cv2.scaleAdd(self.white, gain, light)
        img = cv2.multiply(small, light, dtype=cv2.CV_32F)
        if p.blur > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), p.blur)
        h, w = small.shape[:2]
        y, x = self.noise_rng.integers(0, 33, 2)
        img += self.noise[y : y + h, x : x + w]
        return np.clip(img, 0, 255, out=img).astype(np.uint8)


def render_params(cfg: SynthConfig, actor: int, p: ClipParams) -> np.ndarray:
    """Frames for explicit clip parameters (e.g. `clip_params` with `au` edited): (n, H, W, 3) uint8 RGB."""
    scene = _Scene(cfg, actor_identity(cfg, actor), p)
    return np.stack([scene.frame(i) for i in range(p.n_frames)])


def render_clip(cfg: SynthConfig, actor: int, sentence: str, emotion: str, level: str) -> np.ndarray:
    """Frames (n_frames, H, W, 3) uint8 RGB, deterministic for cfg.seed."""
    return render_params(cfg, actor, clip_params(cfg, actor, sentence, emotion, level))


def head_point(p: ClipParams, i: int, uv: tuple[float, float]) -> np.ndarray:
    """Where head-unit point `uv` lands in target pixels at frame i (e.g. (0, 0.45) is about the mouth)."""
    A, T = _pose(p, i)
    return (A @ np.asarray(uv, np.float64) + T - (SS - 1) / 2) / SS
