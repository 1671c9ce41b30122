"""The embedded default dataset: procedurally rendered, faceted gemstones.

Each stone is a small 3-D crown: a girdle outline of some cut (round, oval, cushion, pear,
marquise, princess, trillion, emerald, asscher, baguette), a table on top and a ring of facets
between them. Facet colours come from a Lambert + Phong shade of the real facet normal plus a
random "internal reflection" term, which is what makes cut stones sparkle. Pictures are drawn
at 2-3x the output size with anti-aliased polygons and shrunk with INTER_AREA.

Image ``i`` depends only on ``(seed, start + i)`` and the output size, so any slice can be
regenerated; the stone's geometry does not depend on the size at all.
"""
from __future__ import annotations

import colorsys
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np

import safe_files as files
from data_prep.errors import DataPrepError
from data_prep.workers import process_pool

_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices
_ONE = 1 << _SHIFT

# (hue in degrees, saturation, value) of real stones; jittered per picture.
_STONES = (
    (350, 0.85, 0.80),  # ruby
    (222, 0.85, 0.75),  # sapphire
    (145, 0.80, 0.65),  # emerald
    (280, 0.60, 0.75),  # amethyst
    (42, 0.85, 0.95),   # citrine
    (195, 0.45, 0.95),  # blue topaz
    (80, 0.70, 0.85),   # peridot
    (185, 0.40, 0.95),  # aquamarine
    (330, 0.55, 0.95),  # pink tourmaline
    (250, 0.65, 0.70),  # tanzanite
    (10, 0.85, 0.55),   # garnet
    (25, 0.75, 0.90),   # padparadscha / fire opal
    (0, 0.04, 0.97),    # diamond
)
_BRILLIANT_CUTS = ("round", "oval", "cushion", "pear", "marquise", "princess", "trillion")
_STEP_CUTS = ("emerald", "asscher", "baguette")
CUTS = _BRILLIANT_CUTS + _STEP_CUTS


def _outline(cut: str, aspect: float, k: int = 16) -> np.ndarray:
    """Girdle of a cut as (k, 2) points on a unit-ish shape centred on 0, in angle order."""
    t = np.linspace(0.0, 2 * np.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    if cut in ("round", "oval"):
        x, y = c, s * aspect
    elif cut in ("cushion", "princess"):
        p = 3.2 if cut == "cushion" else 9.0  # superellipse exponent: rounded vs. sharp square
        x = np.sign(c) * np.abs(c) ** (2 / p)
        y = np.sign(s) * np.abs(s) ** (2 / p) * (aspect if cut == "cushion" else 1.0)
    elif cut == "pear":
        x, y = c, s * np.sin(t / 2) ** 1.2 * 0.85  # teardrop, point at t = 0
        x = x - 0.15
    elif cut == "marquise":
        x, y = c, s * np.abs(s) ** 0.6 * aspect * 0.75  # pointed ellipse
    elif cut == "trillion":
        r = 0.5 / np.cos((t % (2 * np.pi / 3)) - np.pi / 3)  # triangle in polar form
        x, y = 0.75 * r * c + 0.25 * c, 0.75 * r * s + 0.25 * s
    elif cut == "emerald":  # rectangle with cut corners
        x, y = _octagon(k, 1.0, aspect, 0.28)
    elif cut == "asscher":
        x, y = _octagon(k, 1.0, 1.0, 0.32)
    elif cut == "baguette":
        x, y = _octagon(k, 1.0, aspect * 0.8, 0.04)
    else:
        raise ValueError(cut)
    pts = np.stack([x, y], axis=1)
    return pts / np.sqrt((pts ** 2).sum(axis=1)).max()  # fits in the unit circle


def _octagon(k: int, w: float, h: float, corner: float) -> tuple[np.ndarray, np.ndarray]:
    # Step cuts need their corners as vertices: 8 corners, then k/8 points per side.
    cx, cy = corner * min(w, h), corner * min(w, h)
    corners = np.array([(w, -h + cy), (w, h - cy), (w - cx, h), (-w + cx, h),
                        (-w, h - cy), (-w, -h + cy), (-w + cx, -h), (w - cx, -h)])
    per = max(1, k // 8)
    pts = [corners[i] + (corners[(i + 1) % 8] - corners[i]) * j / per
           for i in range(8) for j in range(per)]
    pts = np.array(pts)
    return pts[:, 0], pts[:, 1]


def _normals(polys: np.ndarray) -> np.ndarray:
    """Unit normals (F, 3), facing the viewer, of (F, m, 3) polygons by Newell's method (robust
    for slightly non-planar quads; a repeated vertex adds nothing, so triangles may be padded)."""
    nxt = np.roll(polys, -1, axis=1)
    n = np.stack([
        np.sum((polys[..., 1] - nxt[..., 1]) * (polys[..., 2] + nxt[..., 2]), axis=1),
        np.sum((polys[..., 2] - nxt[..., 2]) * (polys[..., 0] + nxt[..., 0]), axis=1),
        np.sum((polys[..., 0] - nxt[..., 0]) * (polys[..., 1] + nxt[..., 1]), axis=1),
    ], axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    return n * np.where(n[:, 2:] < 0, -1.0, 1.0)


def _facets(cut: str, girdle: np.ndarray, table: float, crown: float) -> list[np.ndarray]:
    """Facets as (m, 3) polygons (x, y, height) from girdle (k, 2); the table comes first."""
    k = len(girdle)

    def ring(scale):
        h = crown * (1.0 - scale) / (1.0 - table)  # straight crown profile
        return np.column_stack([girdle * scale, np.full(k, h)])

    if cut in _STEP_CUTS:
        scales = [1.0, 0.86, 0.72, table]
        rings = [ring(s) for s in scales]
        facets = [rings[-1]]
        for outer, inner in zip(rings[:-1], rings[1:]):
            for i in range(k):
                j = (i + 1) % k
                facets.append(np.array([outer[i], outer[j], inner[j], inner[i]]))
        return facets
    # Brilliant crown: table (k/2 corners), star facets, kites (bezels), upper-girdle facets.
    outer = ring(1.0)
    tab = ring(table)[0::2]
    star = ring(0.5 * (1.0 + table) + 0.05)[1::2]
    half = k // 2
    facets = [tab]
    for j in range(half):
        jn = (j + 1) % half
        facets.append(np.array([tab[j], tab[jn], star[j]]))
        facets.append(np.array([tab[j], star[j - 1], outer[2 * j], star[j]]))
        facets.append(np.array([star[j], outer[2 * j], outer[2 * j + 1]]))
        facets.append(np.array([star[j], outer[2 * j + 1], outer[(2 * j + 2) % k]]))
    return facets


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h / 360.0) % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)))


_BACKGROUNDS = ("white", "white", "white", "light", "light", "dark", "dark", "tint", "tint",
                "gradient", "gradient", "gradient")


def _params(seed: int, index: int) -> dict:
    """Everything random about picture ``index``; independent of the output size."""
    # One vector of uniforms, read in a fixed order: cheaper than many small rng calls.
    u = iter(np.random.default_rng([seed, index, 0x6E35]).random(24).tolist())
    cut = CUTS[int(next(u) * len(CUTS))]
    hue, sat, val = _STONES[int(next(u) * len(_STONES))]
    elongated = cut in ("oval", "marquise", "emerald", "baguette")
    aspect = 0.55 + 0.3 * next(u) if elongated else 0.88 + 0.12 * next(u)
    lx, ly = (next(u) - 0.5) * 1.6, (next(u) - 0.5) * 1.6
    free_angle = next(u) < 0.7
    angle = next(u) * 2 * np.pi if free_angle else (np.pi / 2 if next(u) < 0.5 else 0.0)
    radius = 0.27 + 0.13 * next(u)
    rng = np.random.default_rng([seed, index, 0x5A5A])
    return {
        "cut": cut,
        "aspect": aspect,
        "table": 0.42 + 0.18 * next(u),
        "crown": 0.25 + 0.2 * next(u),
        "hue": hue + (next(u) - 0.5) * 16,
        "sat": sat * (0.8 + 0.3 * next(u)),
        "val": val * (0.8 + 0.25 * next(u)),
        "radius": radius,
        # Off-centre, but never cut by the frame (0.04 left for the shadow).
        "center": np.array([next(u) - 0.5, next(u) - 0.5]) * 2 * (0.46 - radius),
        "angle": angle,
        "light": np.array([lx, ly, 1.0]) / np.sqrt(lx * lx + ly * ly + 1.0),
        "bg_kind": _BACKGROUNDS[int(next(u) * len(_BACKGROUNDS))],
        "bg_hue": next(u) * 360,
        "bg_a": next(u),
        "bg_b": next(u),
        "glints": 1 + int(next(u) * 3),
        "sparkle": rng.random(64),
        "glint_pos": rng.uniform(-0.5, 0.5, size=(3, 2)),
    }


def _background(p: dict, n: int) -> np.ndarray:
    kind = p["bg_kind"]
    if kind == "white":
        top = bottom = np.full(3, 0.93 + 0.07 * p["bg_a"])
    elif kind == "light":
        top = bottom = _hsv(p["bg_hue"], 0.05 + 0.1 * p["bg_b"], 0.75 + 0.2 * p["bg_a"])
    elif kind == "dark":
        top = bottom = _hsv(p["bg_hue"], 0.2 * p["bg_b"], 0.04 + 0.14 * p["bg_a"])
    elif kind == "tint":
        top = bottom = _hsv(p["bg_hue"], 0.15 + 0.3 * p["bg_b"], 0.6 + 0.35 * p["bg_a"])
    else:
        dark = p["bg_a"] < 0.4
        top = _hsv(p["bg_hue"], 0.25 * p["bg_b"], 0.35 if dark else 0.98)
        bottom = _hsv(p["bg_hue"] + 20, 0.3 * p["bg_b"], 0.05 if dark else 0.7)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None, None]
    column = ((top * (1 - ramp) + bottom * ramp) * 255.0 + 0.5).astype(np.uint8)  # (n, 1, 3)
    return np.broadcast_to(column, (n, n, 3)).copy()


def _render(p: dict, size: int) -> np.ndarray:
    """One (size, size, 3) uint8 RGB picture of the stone described by ``p``."""
    ss = 3 if size < 48 else 2  # supersampling on top of LINE_AA polygons
    n = size * ss
    radius = p["radius"] * n
    center = (0.5 + p["center"]) * n
    cos, sin = np.cos(p["angle"]), np.sin(p["angle"])
    rot = np.array([[cos, -sin], [sin, cos]])
    girdle = _outline(p["cut"], p["aspect"])
    facets = _facets(p["cut"], girdle, p["table"], p["crown"])
    table, sides = facets[0], facets[1:]
    # Pad triangles to quads by repeating a vertex so the crown is one (F, 4, 3) array.
    sides = np.stack([f if len(f) == 4 else np.vstack([f, f[-1:]]) for f in sides])

    def to_px(xy, scale=1):
        return np.round((xy @ rot.T * radius + center) * (_ONE / scale)).astype(np.int32)

    # Background and soft shadow (offset away from the light) are smooth: make them at the
    # output size, where blurring and blending are cheap, then enlarge to the canvas.
    small = _background(p, size)
    shadow = np.zeros((size, size), np.uint8)
    offset = (-p["light"][:2] * radius * 0.12 * _ONE / ss).astype(np.int32)
    cv2.fillPoly(shadow, [to_px(girdle, ss) + offset], 255, cv2.LINE_AA, _SHIFT)
    shadow = cv2.GaussianBlur(shadow, (0, 0), radius * 0.08 / ss + 0.5)
    strength = 0.45 if p["bg_kind"] != "dark" else 0.2
    keep = 1.0 - strength * shadow.astype(np.float32) / 255.0
    small = cv2.blendLinear(small, np.zeros_like(small), keep, 1.0 - keep)
    img = cv2.resize(small, (n, n), interpolation=cv2.INTER_LINEAR)

    # Draw the stone in its bounding box only.
    x0, y0 = max(0, int(center[0] - radius) - 2), max(0, int(center[1] - radius) - 2)
    x1, y1 = min(n, int(center[0] + radius) + 3), min(n, int(center[1] + radius) + 3)
    origin = np.array([x0, y0]) * _ONE
    roi = img[y0:y1, x0:x1]
    outer = to_px(girdle) - origin

    base = _hsv(p["hue"], p["sat"], p["val"])
    # The pavilion seen through the table: alternating dark/light wedges from the culet.
    k = len(girdle)
    culet = to_px(np.zeros((1, 2)))[0] - origin
    for i in range(k):
        tone = 0.35 + 0.5 * p["sparkle"][40 + i % 24] * (0.6 if i % 2 else 1.0)
        cv2.fillPoly(roi, [np.array([culet, outer[i], outer[(i + 1) % k]])],
                     (base * tone * 255).tolist(), cv2.LINE_AA, _SHIFT)
    pavilion = roi.copy()

    # Crown facets: Lambert + Phong on the true facet normal, plus a random "internal
    # reflection" per facet, which is what makes a cut stone sparkle.
    normals = _normals(sides)
    normals[:, :2] = normals[:, :2] @ rot.T  # normals live in stone space; turn with the stone
    light = p["light"]
    diffuse = np.maximum(0.0, normals @ light)
    reflect = 2 * diffuse[:, None] * normals - light
    spec = np.maximum(0.0, reflect[:, 2]) ** 24
    internal = p["sparkle"][np.arange(len(sides)) % 40]
    shade = 0.15 + 0.55 * diffuse * (0.4 + internal) + 0.35 * internal ** 2
    rgb = base * shade[:, None] * 1.1 + ((0.9 * spec + 0.25 * internal ** 6)[:, None]
                                         * (1 - base * 0.3))
    colors = np.clip(rgb * 255, 0, 255).tolist()
    side_px = to_px(sides[..., :2].reshape(-1, 2)).reshape(len(sides), 4, 2) - origin
    for poly, color in zip(side_px, colors):
        cv2.fillPoly(roi, [poly], color, cv2.LINE_AA, _SHIFT)

    # The table is glass: let the pavilion pattern show through it.
    table_px = to_px(table[:, :2]) - origin
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [table_px], 255, cv2.LINE_AA, _SHIFT)
    alpha = mask.astype(np.float32) * (0.45 / 255.0)
    roi[:] = cv2.blendLinear(roi, pavilion, 1.0 - alpha, alpha)

    edge_color = (base * 0.35 * 255).tolist()
    thin = max(1, ss // 2)
    cv2.polylines(roi, list(side_px), True, edge_color, 1, cv2.LINE_AA, _SHIFT)
    cv2.polylines(roi, [table_px], True, edge_color, thin, cv2.LINE_AA, _SHIFT)
    cv2.polylines(roi, [outer], True, [c * 0.6 for c in edge_color], thin + 1, cv2.LINE_AA,
                  _SHIFT)
    # Specular glints: small bright stars where the light catches an edge.
    arm = int(radius * 0.12 * _ONE)
    dot = int(radius * 0.03 * _ONE) + _ONE
    for at in to_px(p["glint_pos"][:p["glints"]] * 0.9) - origin:
        x, y = int(at[0]), int(at[1])
        cv2.line(roi, (x - arm, y), (x + arm, y), (255, 255, 255), thin, cv2.LINE_AA, _SHIFT)
        cv2.line(roi, (x, y - arm), (x, y + arm), (255, 255, 255), thin, cv2.LINE_AA, _SHIFT)
        cv2.circle(roi, (x, y), dot, (255, 255, 255), -1, cv2.LINE_AA, _SHIFT)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def render_gems(n: int, size: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Render ``n`` gemstone pictures as uint8 (n, size, size, 3) RGB in [0, 255].

    Picture i is a pure function of (seed, start + i, size), so ``render_gems(10, s, 0, 5)``
    equals ``render_gems(15, s, 0)[5:]``.
    """
    if size < 8:
        raise DataPrepError(f"gem size must be at least 8 pixels, got {size}")
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i] = _render(_params(seed, start + i), size)
    return out


def _render_chunk(args: tuple[int, int, int, int]) -> np.ndarray:
    n, size, seed, start = args
    cv2.setNumThreads(1)
    return render_gems(n, size, seed, start)


def gem_cuts(n: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """int64 (n,): the cut of gem ``start + i`` as an index into :data:`CUTS` (its class), read
    from the same parameters the picture is drawn from, without drawing it."""
    return np.array([CUTS.index(_params(seed, start + i)["cut"]) for i in range(n)], np.int64)


def builtin_gems(size: int, n: int = 8192, seed: int = 0, cache_dir: str | None = None
                 ) -> np.ndarray:
    """The default dataset: ``n`` gems as read-only uint8 (n, size, size, 3) memmap in [0, 255],
    rendered once (in parallel when large) and cached in ``gems_<size>_<n>_<seed>.npy``."""
    directory = Path(cache_dir).expanduser() if cache_dir else files.cache_dir()
    path = directory / f"gems_{size}_{n}_{seed}.npy"
    if path.exists():
        try:
            cached = np.load(path, mmap_mode="r")
            if cached.shape == (n, size, size, 3) and cached.dtype == np.uint8:
                return cached
        except (OSError, ValueError):
            pass  # a damaged cache file is simply rendered again
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataPrepError(f"cannot create the cache folder {directory} ({exc.strerror}); set "
                            f"PADDLE_GAN_KIT_CACHE to a writable folder") from None
    for stale in directory.glob(f"{path.name}{files.TMP_MARK}*"):
        files.remove_if_orphaned(stale)
    chunk = 512
    jobs = [(min(chunk, n - s), size, seed, s) for s in range(0, n, chunk)]
    with files.atomic_path(path, needed=n * size * size * 3) as tmp:
        images = files.open_array(tmp, (n, size, size, 3))
        done = 0
        workers = min(len(jobs), os.cpu_count() or 1)
        if workers > 1 and n * size * size >= 2048 * 64 * 64:
            pool = process_pool(workers)
            if pool is not None:
                try:
                    with pool:
                        for (count, _, _, s), part in zip(jobs, pool.map(_render_chunk, jobs)):
                            images[s:s + count] = part
                            done += 1
                except BrokenProcessPool:
                    pass  # a worker died: render what is left in this process
        for count, _, _, s in jobs[done:]:
            images[s:s + count] = render_gems(count, size, seed, s)
        images.flush()
        del images
    return np.load(path, mmap_mode="r")
