"""Upright planar objects ("sprites") of generated scenes: their shapes, classes and appearance.

Each sprite is a vertical plane facing the camera's forward axis (normal = world z). Shapes are
functions of local coordinates in metres: s (right of the sprite's centre) and y (up from its
base), so rendering by ray casting gives exact geometry and exact flow.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpvss_ros.data.labels import LABEL_ID_BY_NAME as L
from mpvss_ros.data.textures import Textures

KINDS = ("car", "car_side", "truck", "bus", "person", "pole", "sign", "light", "tree")


@dataclass
class Sprite:
    kind: str
    oid: int  # object id, unique in the scene (used for occlusion tests)
    pos: np.ndarray  # (3,) base centre at frame 0, world metres
    vel: np.ndarray  # (3,) metres per frame
    width: float  # bounding width (s in [-width/2, width/2])
    height: float  # bounding height (y in [0, height])
    color: np.ndarray  # (3,) main colour, 0..1
    color2: np.ndarray  # (3,) secondary colour
    tex: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # texture offset

    def position(self, t: int) -> np.ndarray:
        return self.pos + self.vel * t


SIZES = {  # kind: (width, height) ranges are drawn in scene.py around these
    "car": (1.8, 1.5), "car_side": (4.3, 1.5), "truck": (2.5, 3.4), "bus": (2.6, 3.2),
    "person": (0.6, 1.8), "pole": (0.2, 6.0), "sign": (0.8, 3.2), "light": (0.5, 4.5), "tree": (4.0, 8.0),
}


def _box(s, y, s0, s1, y0, y1):
    return (s >= s0) & (s <= s1) & (y >= y0) & (y <= y1)


def shade(sp: Sprite, s: np.ndarray, y: np.ndarray, tex: Textures) -> tuple[np.ndarray, np.ndarray]:
    """-> (label_ids uint8 with 0 = transparent, rgb float32 (n, 3)) at local coords (s, y)."""
    n = s.shape[0]
    lid = np.zeros(n, np.uint8)
    rgb = np.empty((n, 3), np.float32)
    rgb[:] = sp.color
    g = tex.grain(s * 1.0 + sp.tex[0], y + sp.tex[1], metres_per_tile=4.0)[:, None]
    w, h = sp.width, sp.height
    k = sp.kind
    if k in ("car", "truck", "bus"):
        cls = L["car"] if k == "car" else L[k]
        hw = w / 2
        if k == "car":
            body = _box(s, y, -hw, hw, 0.28, 0.55 * h)
            taper = hw - 0.18 - (y - 0.55 * h) * 0.5
            cabin = (y > 0.55 * h) & (y <= h) & (np.abs(s) <= taper)
            glass = (y > 0.6 * h) & (y < 0.93 * h) & (np.abs(s) <= taper - 0.1)
        elif k == "truck":
            body = _box(s, y, -hw, hw, 0.35, h)
            cabin = np.zeros(n, bool)
            glass = np.zeros(n, bool)
        else:
            body = _box(s, y, -hw, hw, 0.3, h)
            cabin = np.zeros(n, bool)
            glass = _box(s, y, -hw + 0.15, hw - 0.15, 0.6 * h, 0.9 * h)
        wheels = (np.abs(s) > hw - 0.5) & (np.abs(s) < hw - 0.08) & (y < 0.4)
        shape = body | cabin | wheels
        lid[shape] = cls
        rgb[:] = sp.color * (1.0 + 0.25 * g)
        rgb[glass] = np.array([0.12, 0.15, 0.2]) * (1.0 + 0.8 * g[glass])
        rgb[wheels & ~body] = 0.06
        lamps = (np.abs(s) > hw - 0.38) & (np.abs(s) < hw - 0.06) & (y > 0.42 * h) & (y < 0.5 * h) & shape
        rgb[lamps] = (0.85, 0.1, 0.08)
        plate = (np.abs(s) < 0.26) & (y > 0.32) & (y < 0.44) & shape
        rgb[plate] = 0.9
        if k == "truck":  # cargo box seams
            seams = body & ((np.mod(s + hw, 0.6) < 0.05) | (np.abs(y - 0.5) < 0.06))
            rgb[seams] *= 0.6
    elif k == "car_side":
        hw = w / 2
        body = _box(s, y, -hw, hw, 0.3, 0.62 * h)
        cabin_front = 0.55 * hw - (y - 0.62 * h) * 1.2
        cabin = (y > 0.62 * h) & (y <= h) & (s > -0.75 * hw + (y - 0.62 * h) * 0.5) & (s < cabin_front)
        wheel_r = 0.34
        wheels = ((s - 0.62 * hw) ** 2 + (y - wheel_r) ** 2 < wheel_r ** 2) | \
                 ((s + 0.62 * hw) ** 2 + (y - wheel_r) ** 2 < wheel_r ** 2)
        shape = body | cabin | wheels
        lid[shape] = L["car"]
        rgb[:] = sp.color * (1.0 + 0.25 * g)
        glass = cabin & (y < 0.95 * h) & (np.abs(s - (-0.1 * hw)) > 0.05)
        rgb[glass] = np.array([0.12, 0.15, 0.2]) * (1.0 + 0.8 * g[glass])
        rgb[wheels] = 0.05
        rgb[body & (np.abs(y - 0.45 * h) < 0.02)] *= 0.5
    elif k == "person":
        head = s ** 2 + (y - (h - 0.12)) ** 2 < 0.12 ** 2
        torso = _box(s, y, -0.2, 0.2, 0.85, h - 0.22)
        arms = (np.abs(s) > 0.2) & (np.abs(s) < 0.28) & (y > 0.95) & (y < h - 0.3)
        legs = (np.abs(s) > 0.03) & (np.abs(s) < 0.18) & (y < 0.87)
        shape = head | torso | arms | legs
        lid[shape] = L["person"]
        rgb[:] = sp.color * (1.0 + 0.4 * g)  # jacket
        rgb[legs] = sp.color2 * (1.0 + 0.4 * g[legs])
        skin = head | (arms & (y < 1.05))
        rgb[skin] = (0.75, 0.55, 0.42)
        rgb[head & (y > h - 0.09)] = 0.12  # hair
    elif k in ("pole", "sign", "light"):
        pole = (np.abs(s) < 0.07) & (y <= h)
        lid[pole] = L["pole"]
        rgb[:] = np.array([0.45, 0.46, 0.47]) * (1.0 + 0.3 * g)
        if k == "sign":
            r = 0.36
            cy = h - r
            d2 = s ** 2 + (y - cy) ** 2
            plate = d2 < r ** 2
            lid[plate] = L["traffic sign"]
            rgb[plate] = sp.color2
            rgb[plate & (d2 < (0.72 * r) ** 2)] = (0.92, 0.92, 0.9)
            rgb[plate & (d2 < (0.72 * r) ** 2) & (np.abs(y - cy) < 0.06)] = 0.1
        elif k == "light":
            box = _box(s, y, -0.17, 0.17, h - 1.0, h)
            lid[box] = L["traffic light"]
            rgb[box] = 0.1 + 0.05 * g[box]
            for i, col in enumerate(((0.9, 0.1, 0.1), (0.9, 0.7, 0.1), (0.1, 0.8, 0.3))):
                lamp = s ** 2 + (y - (h - 0.18 - 0.31 * i)) ** 2 < 0.1 ** 2
                rgb[lamp] = np.array(col) * (1.0 if i == int(sp.tex[0]) % 3 else 0.3)
    elif k == "tree":
        trunk = (np.abs(s) < 0.14) & (y < 0.45 * h)
        r = 0.45 * min(w, h)
        cy = h - r
        ang = np.arctan2(y - cy, s)
        wobble = 1.0 + 0.35 * tex.blotch(np.cos(ang) * 3 + sp.tex[0], np.sin(ang) * 3 + sp.tex[1], 6.0)
        crown = (s / (w / 2)) ** 2 + ((y - cy) / r) ** 2 < wobble ** 2 * 0.95
        crown &= np.abs(s) <= w / 2
        lid[trunk | crown] = L["vegetation"]
        rgb[trunk] = np.array([0.3, 0.22, 0.15]) * (1.0 + 0.5 * g[trunk])
        leaf = tex.grain(s * 3 + sp.tex[0], y * 3, metres_per_tile=6.0)[:, None]
        rgb[crown] = sp.color * (1.0 + 1.4 * leaf[crown])
    else:
        raise ValueError(f"unknown sprite kind {k!r}")
    return lid, rgb
