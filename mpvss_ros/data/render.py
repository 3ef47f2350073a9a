"""Ray-casting renderer for generated street scenes, with exact backward optical flow.

Every pixel's ray is intersected with the ground plane, the two facade planes and each sprite
plane; the nearest hit wins (z-buffer). Because every surface point has a known world position
and velocity, the flow to the previous frame is computed analytically: project the point's
previous position with the previous camera. A pixel is valid when that point was visible then
and inside the image: the nearest previous pixel shows the same object with the same class (so
a point on a class edge inside one object, where nearest-pixel sampling is ambiguous, is also
marked invalid).
"""
from __future__ import annotations

import cv2
import numpy as np

from mpvss_ros.data.labels import LABEL_ID_BY_NAME as L
from mpvss_ros.data.scene import LOT_BUILDING, LOT_FENCE, LOT_GAP, LOT_VEGETATION, LOT_WALL, Scene
from mpvss_ros.data.sprites import shade

OBJ_SKY, OBJ_HOOD, OBJ_GROUND, OBJ_FACADE = 0, 1, 2, 3  # facades: 3 (left), 4 (right); sprites >= 100


class _Canvas:
    """Flat per-pixel buffers and a depth test."""

    def __init__(self, n: int):
        self.depth = np.full(n, np.inf, np.float32)
        self.lid = np.zeros(n, np.uint8)
        self.obj = np.zeros(n, np.int32)
        self.rgb = np.zeros((n, 3), np.float32)  # linear 0..1
        self.prev = np.full((n, 3), np.nan, np.float32)  # world point at the previous frame

    def put(self, idx, depth, lid, rgb, obj, prev) -> None:
        keep = depth < self.depth[idx]
        idx = idx[keep]
        self.depth[idx] = depth[keep]
        self.lid[idx] = lid[keep] if np.ndim(lid) else lid
        self.obj[idx] = obj[keep] if np.ndim(obj) else obj
        self.rgb[idx] = rgb[keep]
        self.prev[idx] = prev[keep]


class Renderer:
    def __init__(self, scene: Scene):
        self.scene = scene
        cam = scene.camera
        self.h, self.w = cam.height, cam.width
        v, u = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        self.u = u.ravel()
        self.v = v.ravel()
        self.rays_cam = np.stack([(self.u - cam.cx) / cam.f, -(self.v - cam.cy) / cam.f,
                                  np.ones_like(self.u)], axis=1).astype(np.float32)  # z = 1: t = depth
        xn = (u - cam.cx) / (self.w / 2)
        self.hood = (v >= self.h * (0.9 + 0.08 * xn ** 2)).ravel()

    # -- rendering ---------------------------------------------------------------------------
    def render(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """-> image (H,W,3) uint8, label_ids (H,W) uint8, obj (H,W) int32, prev points (H*W,3)."""
        sc, cam = self.scene, self.scene.camera
        c = cam.centres[t].astype(np.float32)
        rays = self.rays_cam @ cam.rotation(t).T.astype(np.float32)
        cv = _Canvas(self.h * self.w)
        # Near-to-far-ish order so that the depth pre-tests skip shading of hidden ground pixels.
        rot = cam.rotation(t)
        for sp in sc.sprites:
            self._sprite(cv, rays, c, rot, sp, t)
        for side in (0, 1):
            self._facade(cv, rays, c, side)
        self._ground(cv, rays, c)
        self._sky(cv, rays)
        hood = np.flatnonzero(self.hood)
        shade_rows = (self.v[hood] / self.h - 0.9) * 2
        cv.lid[hood] = L["ego vehicle"]
        cv.obj[hood] = OBJ_HOOD
        cv.rgb[hood] = np.array([0.16, 0.16, 0.18]) * (1.0 - shade_rows)[:, None]
        cv.prev[hood] = np.nan
        img = (cv.rgb * sc.gain[None, :] * 255.0).reshape(self.h, self.w, 3)
        img = cv2.GaussianBlur(img, (3, 3), 0.6)  # lens softness, keeps textures trackable
        image = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return image, cv.lid.reshape(self.h, self.w), cv.obj.reshape(self.h, self.w), cv.prev

    def _sky(self, cv: _Canvas, rays: np.ndarray) -> None:
        """Fill every pixel no surface was hit at (runs last; the canvas starts as sky)."""
        sc = self.scene
        idx = np.flatnonzero(~np.isfinite(cv.depth) & ~self.hood)
        rays = rays[idx]
        norm = np.linalg.norm(rays, axis=1)
        elev = rays[:, 1] / norm
        azim = np.arctan2(rays[:, 0], rays[:, 2])
        a = np.clip(elev * 2.5, 0, 1)[:, None] ** 0.7
        clouds = sc.textures.blotch(azim * 40, elev * 40, 50.0)[:, None]
        cv.rgb[idx] = sc.sky_horizon * (1 - a) + sc.sky_top * a + 0.35 * np.clip(clouds, 0, None)
        cv.lid[idx] = L["sky"]
        cv.obj[idx] = OBJ_SKY

    def _ground(self, cv: _Canvas, rays: np.ndarray, c: np.ndarray) -> None:
        sc, tex = self.scene, self.scene.textures
        idx = np.flatnonzero(rays[:, 1] < -1e-6)
        t = -c[1] / rays[idx, 1]
        seen = t < cv.depth[idx]
        idx, t = idx[seen], t[seen]
        p = c[None, :] + t[:, None] * rays[idx]
        x, z = p[:, 0], p[:, 2]
        ax = np.abs(x)
        side = (x > 0).astype(np.intp)
        lid = np.full(len(idx), L["road"], np.uint8)
        grain = tex.grain(x, z, 6.0)
        blotch = tex.blotch(x, z, 40.0)
        rgb = sc.road_color * (1.0 + 0.45 * grain + 0.35 * blotch)[:, None]
        # lane markings (part of "road" in Cityscapes): dashed centre line, solid edge lines
        mark = ((ax < 0.08) & (np.mod(z, 9.0) < 3.0)) | (np.abs(ax - (sc.road_half - 0.3)) < 0.08)
        rgb[mark] = 0.85 + 0.1 * grain[mark, None]
        walk_out = sc.road_half + sc.sidewalk[side]
        walk = (ax >= sc.road_half) & (ax < walk_out)
        yard = np.zeros(len(idx), bool)
        for s in (0, 1):
            m = (side == s) & (ax >= walk_out)
            lots = sc.lots[s]
            yard[m] = lots.yard[lots.index(z[m])] | (ax[m] > sc.facade_x[s] + 0.5)
        walk |= (ax >= walk_out) & ~yard
        lid[walk] = L["sidewalk"]
        tiles = (np.mod(x, 0.6) < 0.04) | (np.mod(z, 0.6) < 0.04)
        rgb[walk] = sc.sidewalk_color * (1.0 + 0.35 * grain[walk] + 0.2 * blotch[walk] - 0.25 * tiles[walk])[:, None]
        kerb = walk & (ax < sc.road_half + 0.15)
        rgb[kerb] = 0.7
        lid[yard] = L["terrain"]
        rgb[yard] = sc.terrain_color * (1.0 + 0.9 * grain[yard] + 0.4 * blotch[yard])[:, None]
        cv.put(idx, t.astype(np.float32), lid, rgb, OBJ_GROUND, p.astype(np.float32))

    def _facade(self, cv: _Canvas, rays: np.ndarray, c: np.ndarray, side: int) -> None:
        sc, tex = self.scene, self.scene.textures
        lots = sc.lots[side]
        sign = -1.0 if side == 0 else 1.0
        idx = np.flatnonzero(sign * rays[:, 0] > 1e-6)
        d = rays[idx]
        t = (sign * sc.facade_x[side] - c[0]) / d[:, 0]
        p = c[None, :] + t[:, None] * d
        y, z = p[:, 1], p[:, 2]
        # cheap visibility first; texture lookups only for the pixels that show the facade
        keep = (y >= 0) & (t < cv.depth[idx]) & (z >= lots.start[0]) & (z < lots.end[-1])
        idx, t, p, y, z = idx[keep], t[keep], p[keep], y[keep], z[keep]
        li = lots.index(z)
        kind = lots.kind[li]
        top = np.select([kind == LOT_BUILDING, kind == LOT_WALL, kind == LOT_GAP], [lots.top[li], lots.low[li], 0.0],
                        lots.top[li])
        leafy = (kind == LOT_VEGETATION) | (kind == LOT_FENCE)
        top[leafy] += 1.5 * tex.blotch(z[leafy] * 3 + 300 * side, 7.0, 40.0)  # ragged tree line
        inside = y <= top
        idx, t, p, y, z, li, kind = (a[inside] for a in (idx, t, p, y, z, li, kind))
        grain = tex.grain(z + 100 * side, y, 8.0)
        n = len(idx)
        lid = np.full(n, L["building"], np.uint8)
        rgb = lots.color[li] * (1.0 + 2 * lots.texture[li] * grain + 0.5 * lots.texture[li]
                                * tex.blotch(z, y + 50, 30.0))[:, None]
        zr = z - lots.start[li]
        col = np.mod(zr, lots.pitch[li]) / lots.pitch[li]
        row = np.mod(y, 3.0) / 3.0
        b = kind == LOT_BUILDING
        window = b & (col > 0.3) & (col < 0.7) & (row > 0.35) & (row < 0.8) & (y > 3.0) & (y < lots.top[li] - 0.8)
        rgb[window] = np.array([0.14, 0.17, 0.22]) * (1.0 + 1.2 * grain[window] + 0.3 * np.cos(zr[window]))[:, None]
        shop = b & (y < 2.6) & (col > 0.15) & (col < 0.85) & (li % 2 == 0)
        rgb[shop] = np.array([0.2, 0.2, 0.22]) * (1.0 + 1.5 * grain[shop])[:, None]
        roof = b & (y > lots.top[li] - 0.35)
        rgb[roof] *= 0.75
        wall = kind == LOT_WALL
        lid[wall] = L["wall"]
        rgb[wall] *= (1.0 - 0.3 * (np.mod(y[wall], 0.5) < 0.04))[:, None]
        veg = (kind == LOT_VEGETATION) | (kind == LOT_FENCE)
        lid[veg] = L["vegetation"]
        leaf = tex.grain(z * 2.5 + 40, y * 2.5, 5.0)
        rgb[veg] = np.array([0.2, 0.33, 0.1]) * (1.0 + 1.6 * leaf[veg] + 0.6 * grain[veg])[:, None]
        fence = (kind == LOT_FENCE) & (y <= lots.low[li]) & (
            (np.mod(zr, 0.3) < 0.07) | (np.abs(y - lots.low[li] + 0.08) < 0.06) | (np.abs(y - 0.35) < 0.05))
        lid[fence] = L["fence"]
        rgb[fence] = np.array([0.42, 0.38, 0.33]) * (1.0 + 0.6 * grain[fence])[:, None]
        rgb *= sc.side_shade[side]
        cv.put(idx, t.astype(np.float32), lid, rgb, OBJ_FACADE + side, p.astype(np.float32))

    def _sprite(self, cv: _Canvas, rays, c, rot, sp, t: int) -> None:
        o = sp.position(t)
        if not 1.5 < o[2] - c[2] < 110.0:  # beyond 110 m objects are a few pixels; skip the cost
            return
        corners = np.array([[o[0] + dx, o[1] + dy, o[2]] for dx in (-sp.width / 2, sp.width / 2)
                            for dy in (0.0, sp.height)])
        q = (corners - c) @ rot
        if np.any(q[:, 2] < 1.0):  # too close to (or behind) the camera plane
            return
        cam = self.scene.camera
        us = cam.f * q[:, 0] / q[:, 2] + cam.cx
        vs = -cam.f * q[:, 1] / q[:, 2] + cam.cy
        u0, u1 = max(int(np.floor(us.min())), 0), min(int(np.ceil(us.max())), self.w - 1)
        v0, v1 = max(int(np.floor(vs.min())), 0), min(int(np.ceil(vs.max())), self.h - 1)
        if u0 > u1 or v0 > v1 or vs.max() - vs.min() < 2.0:  # off screen, or too far to matter
            return
        vv, uu = np.mgrid[v0:v1 + 1, u0:u1 + 1]
        idx = (vv * self.w + uu).ravel()
        d = rays[idx]
        th = (o[2] - c[2]) / d[:, 2]
        p = c[None, :] + th[:, None] * d
        lid, rgb = shade(sp, (p[:, 0] - o[0]).astype(np.float32), (p[:, 1] - o[1]).astype(np.float32),
                         self.scene.textures)
        m = lid > 0
        if not m.any():
            return
        cv.put(idx[m], th[m].astype(np.float32), lid[m], rgb[m], sp.oid, (p[m] - sp.vel).astype(np.float32))

    # -- flow --------------------------------------------------------------------------------
    @staticmethod
    def segment_ids(obj: np.ndarray, label_ids: np.ndarray) -> np.ndarray:
        """Object and class in one integer: what must match between frames for a valid pixel."""
        return obj.astype(np.int64) * 256 + label_ids

    def backward_flow(self, t: int, segments: np.ndarray, prev_points: np.ndarray, prev_segments: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Flow from frame t to t-1 ((H,W,2): where each pixel of t was in t-1) and its valid mask."""
        cam = self.scene.camera
        rot_prev = cam.rotation(t - 1)
        objf = segments.ravel()
        sky = objf // 256 == OBJ_SKY
        hood = objf // 256 == OBJ_HOOD
        rot_prev = rot_prev.astype(np.float32)
        q = (prev_points - cam.centres[t - 1].astype(np.float32)) @ rot_prev
        rays_now = self.rays_cam[sky] @ cam.rotation(t).T.astype(np.float32)
        q[sky] = rays_now @ rot_prev  # at infinity only rotation moves a point
        with np.errstate(invalid="ignore", divide="ignore"):
            up = cam.f * q[:, 0] / q[:, 2] + cam.cx
            vp = -cam.f * q[:, 1] / q[:, 2] + cam.cy
        up[hood] = self.u[hood]
        vp[hood] = self.v[hood]
        flow = np.stack([up - self.u, vp - self.v], axis=1)
        front = (q[:, 2] > 0.05) | hood
        ui = np.rint(np.where(np.isfinite(up), up, -1)).astype(np.int64)
        vi = np.rint(np.where(np.isfinite(vp), vp, -1)).astype(np.int64)
        inside = front & (ui >= 0) & (ui < self.w) & (vi >= 0) & (vi < self.h)
        valid = np.zeros_like(inside)
        valid[inside] = prev_segments.ravel()[vi[inside] * self.w + ui[inside]] == objf[inside]
        flow[~valid] = 0.0
        return flow.reshape(self.h, self.w, 2).astype(np.float32), valid.reshape(self.h, self.w)
