"""Random street-scene layouts: camera path, facade lots, sprites, lighting (one per sequence).

World frame: x right, y up, z along the street; the road is centred on x = 0, facades are the
vertical planes x = -facade_x[0] and x = +facade_x[1], the ground is y = 0. Units are metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpvss_ros.data.sprites import SIZES, Sprite
from mpvss_ros.data.textures import Textures

LOT_BUILDING, LOT_VEGETATION, LOT_WALL, LOT_FENCE, LOT_GAP = range(5)


@dataclass
class Camera:
    f: float
    cx: float
    cy: float
    height: int
    width: int
    centres: np.ndarray  # (T, 3) world position per frame
    yaw: np.ndarray  # (T,) radians, + turns right
    pitch: np.ndarray  # (T,) radians, + looks up

    def rotation(self, t: int) -> np.ndarray:
        """Camera-to-world rotation (camera axes: x right, y up, z forward)."""
        cy_, sy = np.cos(self.yaw[t]), np.sin(self.yaw[t])
        cp, sp = np.cos(self.pitch[t]), np.sin(self.pitch[t])
        ry = np.array([[cy_, 0, sy], [0, 1, 0], [-sy, 0, cy_]])
        rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
        return ry @ rx


@dataclass
class Lots:
    """Facade segments of one side along z: [start, end) with a kind and appearance."""
    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray  # LOT_* codes
    top: np.ndarray  # building / vegetation height, m
    low: np.ndarray  # wall / fence height, m
    color: np.ndarray  # (n, 3)
    texture: np.ndarray  # texture amplitude (near 0 = textureless)
    pitch: np.ndarray  # window spacing, m
    yard: np.ndarray  # bool: grass (terrain) between sidewalk and facade

    def index(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.start, z, side="right") - 1, 0, len(self.start) - 1)


@dataclass
class Scene:
    camera: Camera
    road_half: float
    sidewalk: np.ndarray  # (2,) widths left, right
    facade_x: np.ndarray  # (2,) distance of left / right facade from the centre line
    lots: tuple[Lots, Lots]  # left, right
    sprites: list[Sprite]
    textures: Textures
    gain: np.ndarray  # (3,) per-channel light gain
    side_shade: np.ndarray  # (2,) facade brightness left, right (sun side)
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    road_color: np.ndarray
    sidewalk_color: np.ndarray
    terrain_color: np.ndarray


def _lots(rng: np.random.Generator, z0: float, z1: float) -> Lots:
    rows = []
    z = z0
    while z < z1:
        kind = int(rng.choice(5, p=[0.52, 0.18, 0.1, 0.12, 0.08]))
        length = {LOT_BUILDING: (8, 30), LOT_VEGETATION: (5, 18), LOT_WALL: (4, 12),
                  LOT_FENCE: (5, 14), LOT_GAP: (3, 8)}[kind]
        length = rng.uniform(*length)
        if kind == LOT_BUILDING:
            base = rng.choice([[0.62, 0.58, 0.52], [0.55, 0.5, 0.48], [0.7, 0.66, 0.6],
                               [0.6, 0.45, 0.38], [0.48, 0.5, 0.55], [0.75, 0.72, 0.66]])
            color = np.clip(base + rng.normal(0, 0.05, 3), 0.1, 0.95)
        elif kind == LOT_WALL:
            color = np.clip(np.array([0.58, 0.56, 0.52]) + rng.normal(0, 0.05, 3), 0.1, 0.95)
        else:
            color = np.clip(np.array([0.38, 0.36, 0.34]) + rng.normal(0, 0.04, 3), 0.1, 0.95)
        rows.append((z, z + length, kind, rng.uniform(7, 26) if kind == LOT_BUILDING else rng.uniform(3, 9),
                     rng.uniform(1.2, 2.8), color,
                     rng.choice([0.03, 0.25, 0.45]) if kind == LOT_BUILDING else 0.3,
                     rng.uniform(2.4, 4.0), kind in (LOT_VEGETATION, LOT_FENCE) or rng.random() < 0.15))
        z += length
    cols = list(zip(*rows))
    return Lots(np.array(cols[0]), np.array(cols[1]), np.array(cols[2]), np.array(cols[3]),
                np.array(cols[4]), np.array(cols[5]), np.array(cols[6]), np.array(cols[7]),
                np.array(cols[8], bool))


def _color(rng, palette) -> np.ndarray:
    return np.clip(np.array(palette[rng.integers(len(palette))]) + rng.normal(0, 0.03, 3), 0.02, 0.98)


CAR_COLORS = [[0.8, 0.8, 0.82], [0.1, 0.1, 0.12], [0.55, 0.06, 0.06], [0.15, 0.22, 0.45],
              [0.45, 0.46, 0.48], [0.85, 0.85, 0.8], [0.2, 0.35, 0.25], [0.7, 0.55, 0.15]]
CLOTHES = [[0.1, 0.1, 0.15], [0.5, 0.1, 0.1], [0.15, 0.25, 0.5], [0.6, 0.55, 0.4], [0.25, 0.4, 0.2],
           [0.8, 0.75, 0.7], [0.35, 0.3, 0.3]]


def make_scene(rng: np.random.Generator, frames: int, size: tuple[int, int]) -> Scene:
    h_img, w_img = size
    textures = Textures(rng)
    road_half = float(rng.uniform(3.6, 6.0))
    sidewalk = rng.uniform(2.0, 4.0, 2)
    facade_x = road_half + sidewalk + rng.uniform(0.0, 3.0, 2)

    # Ego motion: mostly driving (0.5-1.3 m/frame at ~17 fps = 30-80 km/h), sometimes slow.
    speed = rng.uniform(0.5, 1.3) if rng.random() < 0.85 else rng.uniform(0.1, 0.4)
    t = np.arange(frames, dtype=np.float64)
    # wide streets get a parking strip (2.2 m) on each side; we drive in the middle of the right lane
    parking = road_half >= 5.0
    lane_x = (road_half - (2.2 if parking else 0.0)) * 0.5 + rng.uniform(-0.2, 0.2)
    sway = rng.uniform(0.0, 0.4)
    phase = rng.uniform(0, 2 * np.pi, 3)
    centres = np.stack([lane_x + sway * np.sin(0.15 * t + phase[0]),
                        np.full(frames, rng.uniform(1.3, 1.7)), speed * t], axis=1)
    yaw = np.deg2rad(rng.uniform(0.5, 2.5)) * np.sin(0.12 * t + phase[1])
    pitch = np.deg2rad(rng.uniform(0.1, 0.8)) * np.sin(0.5 * t + phase[2])
    f = w_img * rng.uniform(0.75, 0.9)
    camera = Camera(f, (w_img - 1) / 2, h_img * 0.46, h_img, w_img, centres, yaw, pitch)

    z_end = speed * frames + 160.0
    lots = (_lots(rng, -30.0, z_end), _lots(rng, -30.0, z_end))

    sprites: list[Sprite] = []

    def add(kind, x, z, vel=(0.0, 0.0, 0.0), color=None, color2=None, scale=1.0):
        w, hh = SIZES[kind]
        w, hh = w * scale, hh * scale
        sprites.append(Sprite(kind, 100 + len(sprites), np.array([x, 0.0, z]), np.array(vel, float), w, hh,
                              color if color is not None else _color(rng, CAR_COLORS),
                              color2 if color2 is not None else _color(rng, CAR_COLORS),
                              rng.uniform(0, 50, 2).astype(np.float32)))

    for side, sign in ((0, -1.0), (1, 1.0)):
        edge = road_half + 0.35
        z = rng.uniform(0, 15)
        while z < z_end:  # street furniture along the kerb
            kind = rng.choice(["pole", "sign", "light"], p=[0.45, 0.3, 0.25])
            sign_col = [[0.8, 0.1, 0.1], [0.1, 0.25, 0.7], [0.9, 0.75, 0.1]]
            add(kind, sign * edge, z, color2=_color(rng, sign_col), scale=rng.uniform(0.85, 1.2))
            z += rng.uniform(10, 30)
        z = rng.uniform(0, 10)
        while z < z_end:  # trees
            if rng.random() < 0.55:
                x = sign * (road_half + sidewalk[side] * rng.uniform(0.6, 0.9))
                add("tree", x, z, color=_color(rng, [[0.25, 0.4, 0.12], [0.2, 0.33, 0.1], [0.32, 0.42, 0.15]]),
                    scale=rng.uniform(0.7, 1.3))
            z += rng.uniform(7, 18)
        z = rng.uniform(0, 10)
        while parking and z < z_end:  # parked cars
            if rng.random() < 0.6:
                add("car", sign * (road_half - 1.1), z, scale=rng.uniform(0.95, 1.08))
            z += rng.uniform(5.5, 14)
        for _ in range(rng.integers(2, 8)):  # pedestrians on the sidewalk
            x = sign * (road_half + rng.uniform(0.5, sidewalk[side] - 0.3))
            vz = rng.choice([-1, 1]) * rng.uniform(0.04, 0.1)
            add("person", x, rng.uniform(4, z_end - 40), (0, 0, vz), _color(rng, CLOTHES), _color(rng, CLOTHES),
                scale=rng.uniform(0.9, 1.1))

    # Traffic: same direction ahead of us, oncoming, crossing; never closer than 7 m ahead.
    for _ in range(rng.integers(0, 3)):
        gap0 = rng.uniform(9, 45)
        v = speed * rng.uniform(0.6, 1.2)
        if gap0 + (v - speed) * frames < 7:
            v = speed + (7 - gap0) / frames
        kind = "car" if rng.random() < 0.75 else rng.choice(["truck", "bus"])
        add(kind, lane_x + rng.uniform(-0.2, 0.2), centres[0, 2] + gap0 + len(sprites) % 3 * 0.5, (0, 0, v))
    for _ in range(rng.integers(1, 5)):
        kind = "car" if rng.random() < 0.75 else rng.choice(["truck", "bus"])
        add(kind, -lane_x + rng.uniform(-0.2, 0.2), rng.uniform(15, z_end - 20), (0, 0, -rng.uniform(0.4, 1.2)))
    # Crossing traffic stays ahead of where the camera ends (we never drive through anyone).
    z_last = centres[-1, 2]
    if rng.random() < 0.6:
        d = rng.choice([-1.0, 1.0])
        add("car_side", -d * (road_half + 2), z_last + rng.uniform(12, 30), (d * rng.uniform(0.35, 0.8), 0, 0))
    for _ in range(rng.integers(0, 3)):
        d = rng.choice([-1.0, 1.0])
        add("person", -d * rng.uniform(0, road_half), z_last + rng.uniform(8, 25),
            (d * rng.uniform(0.05, 0.13), 0, 0), _color(rng, CLOTHES), _color(rng, CLOTHES))

    overcast = rng.random() < 0.35
    gain = rng.uniform(0.6, 1.3) * (1 + rng.normal(0, 0.05, 3))
    return Scene(
        camera=camera, road_half=road_half, sidewalk=sidewalk, facade_x=facade_x, lots=lots, sprites=sprites,
        textures=textures, gain=gain, side_shade=rng.uniform(0.65, 1.0, 2),
        sky_top=np.array([0.62, 0.64, 0.68]) if overcast else np.array([0.3, 0.5, 0.82]),
        sky_horizon=np.array([0.8, 0.8, 0.82]) if overcast else np.array([0.72, 0.8, 0.9]),
        road_color=np.clip(np.array([0.3, 0.3, 0.31]) + rng.normal(0, 0.03), 0.1, 0.6),
        sidewalk_color=np.clip(rng.choice([[0.6, 0.58, 0.55], [0.55, 0.45, 0.42], [0.5, 0.5, 0.52]])
                               + rng.normal(0, 0.03, 3), 0.1, 0.9),
        terrain_color=np.clip(np.array([0.4, 0.5, 0.22]) + rng.normal(0, 0.04, 3), 0.05, 0.9),
    )
