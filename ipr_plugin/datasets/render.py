"""Renderer of synthetic scenes of articulated people with COCO's 17 keypoints (pure numpy + cv2).

Every drawing call paints both the BGR image and an int32 *label map* of the same size, so the final label map
says which primitive owns each pixel. Visibility flags follow from it instead of from geometry guesses: a joint is
v=2 only if the disc drawn at it is still intact in the final label map, v=1 if anything (another person, an
occluder, a nearer body part of the same person, a neighbouring joint disc) covers part of it, v=0 if it falls
outside the image or is left unlabeled (face points turned away from the camera, as COCO's annotators do).

Label map values: 0 background, -1 occluder, ``p * 32 + 1 + k`` the disc of joint ``k`` of person ``p`` (p >= 1),
``p * 32 + 18 + layer`` the body of person ``p`` (layer 0 far limbs, 1 torso and head, 2 near limbs).

Coordinates are pixels, x to the right and y down, a keypoint ``(x, y)`` being the centre of pixel
``image[y, x]``.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import cv2
import numpy as np

NUM_KEYPOINTS = 17
# COCO order: nose, l/r eye, l/r ear, l/r shoulder, l/r elbow, l/r wrist, l/r hip, l/r knee, l/r ankle.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI, L_HIP, R_HIP, L_KNE, R_KNE, \
    L_ANK, R_ANK = range(NUM_KEYPOINTS)
# Per side: shoulder, elbow, wrist, hip, knee, ankle.
_SIDES = {'l': (L_SHO, L_ELB, L_WRI, L_HIP, L_KNE, L_ANK), 'r': (R_SHO, R_ELB, R_WRI, R_HIP, R_KNE, R_ANK)}


def _joint_colors() -> np.ndarray:
    """(17, 3) uint8 BGR: fully saturated hues 360/17 degrees apart, so each survives JPEG as its nearest."""
    hues = (np.arange(NUM_KEYPOINTS) * 180 // NUM_KEYPOINTS).astype(np.uint8)  # OpenCV hue is 0..179
    hsv = np.stack([hues, np.full_like(hues, 255), np.full_like(hues, 255)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


JOINT_COLORS_BGR: np.ndarray = _joint_colors()
OCCLUDER_LABEL = -1
_LABELS_PER_PERSON = 32
_BODY_LABEL = 18


@dataclass(frozen=True)
class SceneParams:
    """What a scene may contain; ``synthetic_coco.DIFFICULTIES`` holds the 'normal' and 'hard' presets.

    Attributes:
        people_per_image: inclusive (min, max) number of people drawn.
        height_frac: (min, max) of a person's height as a fraction of the image height, sampled log-uniformly.
        small_prob: probability that a person is drawn small instead, at 0.06-0.2 of the image height.
        lean_std: std of the torso's lean from vertical, radians.
        truncation_prob: probability that a person may be placed partly outside the image.
        occluders_mean: Poisson mean of occluding shapes drawn over the people.
        back_view_prob: probability that a person is seen from the back.
    """
    people_per_image: Tuple[int, int] = (1, 4)
    height_frac: Tuple[float, float] = (0.35, 0.9)
    small_prob: float = 0.0
    lean_std: float = 0.15
    truncation_prob: float = 0.15
    occluders_mean: float = 1.0
    back_view_prob: float = 0.1


@dataclass
class RenderedPerson:
    """One person of a rendered scene.

    Attributes:
        keypoints: (17, 2) int64, pixel position of each joint, possibly outside the image.
        visible: (17,) int64, COCO flags: 0 outside the image or unlabeled, 1 labeled but hidden, 2 visible.
        bbox: (x, y, w, h) of the person's visible pixels in the image, or None when none is visible.
        area: number of visible pixels of the person.
        polygons: outlines of the visible pixels, COCO segmentation style (each a flat [x0, y0, x1, y1, ...]).
    """
    keypoints: np.ndarray
    visible: np.ndarray
    bbox: Optional[Tuple[int, int, int, int]] = None
    area: int = 0
    polygons: List[List[float]] = field(default_factory=list)


class _Canvas:
    """BGR image plus label map, painted together so the label map always matches what is visible."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.label = np.zeros(image.shape[:2], np.int32)

    def line(self, p0: np.ndarray, p1: np.ndarray, color, thickness: int, label: int) -> None:
        for dst, val in ((self.image, color), (self.label, label)):
            cv2.line(dst, _pt(p0), _pt(p1), val, thickness, cv2.LINE_8)

    def circle(self, c: np.ndarray, radius: int, color, label: int) -> None:
        for dst, val in ((self.image, color), (self.label, label)):
            cv2.circle(dst, _pt(c), radius, val, -1, cv2.LINE_8)

    def polygon(self, pts: np.ndarray, color, label: int) -> None:
        poly = [np.round(pts).astype(np.int32)]
        for dst, val in ((self.image, color), (self.label, label)):
            cv2.fillPoly(dst, poly, val, cv2.LINE_8)

    def ellipse(self, c: np.ndarray, axes: Tuple[int, int], angle: float, color, label: int) -> None:
        for dst, val in ((self.image, color), (self.label, label)):
            cv2.ellipse(dst, _pt(c), axes, angle, 0, 360, val, -1, cv2.LINE_8)

    def count(self, c: Tuple[int, int], radius: int, label: int) -> int:
        """Pixels equal to ``label`` in the square of half-side ``radius`` around ``c``."""
        x, y = c
        win = self.label[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1]
        return int(np.count_nonzero(win == label))


def _inside(kp: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """(K,) bool: which of the (K, 2) integer keypoints fall on a pixel of an image of ``shape`` (H, W, ...)."""
    return (kp[:, 0] >= 0) & (kp[:, 0] < shape[1]) & (kp[:, 1] >= 0) & (kp[:, 1] < shape[0])


def _pt(p: np.ndarray) -> Tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> Tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _mix(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 ``c0 + t * (c1 - c0)`` for (H, W) weights ``t`` and colours or images ``c0``, ``c1``.

    Per channel because numpy broadcasting over a trailing axis of 3 is ~20x slower than contiguous planes.
    """
    def plane(c: np.ndarray, i: int) -> np.ndarray:
        return c[..., i] if c.ndim == 3 else np.float32(c[i])

    return cv2.merge([plane(c0, i) + t * (plane(c1, i) - plane(c0, i)) for i in range(3)])


def render_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A textured (H, W, 3) uint8 BGR background: gradient or smooth noise, maybe stripes, shapes, pixel noise."""
    # Broadcast coordinates rather than full grids: the background is most of the rendering time.
    xx, yy = np.arange(width, dtype=np.float32)[None], np.arange(height, dtype=np.float32)[:, None]
    if rng.random() < 0.5:  # linear gradient between two colours along a random direction
        theta = rng.uniform(0, 2 * np.pi)
        t = xx * np.float32(np.cos(theta)) + yy * np.float32(np.sin(theta))
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        img = _mix(t, *rng.uniform(0, 255, (2, 3)))
    else:  # low-frequency colour noise: a coarse random grid upsampled smoothly
        cells = int(rng.integers(3, 12))
        grid = rng.uniform(0, 255, (cells, max(cells * width // height, 2), 3)).astype(np.float32)
        img = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.4:  # stripes blended over the base
        theta, period = rng.uniform(0, np.pi), rng.uniform(8, 60)
        phase = (xx * np.float32(np.cos(theta)) + yy * np.float32(np.sin(theta))) * np.float32(2 * np.pi / period)
        img = _mix(0.25 + 0.25 * np.sin(phase), img, rng.uniform(0, 255, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 12))):  # clutter: distractors a detector or a pose model must ignore
        c, r = (int(rng.integers(0, width)), int(rng.integers(0, height))), int(rng.integers(5, height // 6))
        if rng.random() < 0.5:
            cv2.circle(img, c, r, _color(rng), -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, c, (c[0] + r, c[1] + int(rng.integers(5, height // 5))), _color(rng), -1)
    # Uniform sensor noise from random bytes, far cheaper than Gaussian floats at this size.
    amp = int(rng.integers(1, 10))
    noise = rng.integers(0, 2 * amp + 1, img.shape, dtype=np.uint8).astype(np.int16) - amp
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


# Face points on a head sphere of radius R: (keypoint, azimuth from the facing direction towards the person's
# left [rad], height [R], distance from the centre [R], least cos(azimuth + yaw) at which it is still labeled).
# Ears stick out, so they stay labeled a little past the profile view; nose and eyes are not labeled from behind.
_FACE = ((NOSE, 0.0, -0.3, 1.2, 0.0), (L_EYE, 0.32, 0.1, 1.0, 0.0), (R_EYE, -0.32, 0.1, 1.0, 0.0),
         (L_EAR, np.pi / 2, 0.0, 1.0, -0.35), (R_EAR, -np.pi / 2, 0.0, 1.0, -0.35))
HEAD_RADIUS = 0.065  # of the person's height


def _pose(rng: np.random.Generator, height: float, lean_std: float, back: bool) -> dict:
    """Sample a kinematic pose; returns joint and helper positions (pixels) relative to the pelvis.

    A person of ``height`` px spans about 0.95 * height from head top to ankles. The body frame has unit vectors
    ``right`` and ``up``, rotated by the lean. Shoulders, hips and face points sit on vertical cylinders / a
    sphere turned by a yaw (0: facing the camera, the person's left on the image right), so turning the body
    narrows the shoulders and moves the face, and the yaw says which side is far from the camera.

    Returns:
        dict: ``kp`` (17, 2) float joints, ``neck`` and ``head`` (2,) centres, ``far`` ('l' or 'r') the side
        away from the camera, ``unlabeled`` the face points turned away from the camera.
    """
    lean = float(np.clip(rng.normal(0, lean_std), -1.2, 1.2))
    right, up = np.array([np.cos(lean), np.sin(lean)]), np.array([np.sin(lean), -np.cos(lean)])
    yaw = (np.pi if back else 0.0) + rng.normal(0, 0.6)

    def at(a: float, b: float) -> np.ndarray:
        return height * (a * right + b * up)

    kp = np.zeros((NUM_KEYPOINTS, 2))
    neck = at(0.0, 0.30)
    for (left, rgt), radius, b in (((L_SHO, R_SHO), 0.11, 0.28), ((L_HIP, R_HIP), 0.08, 0.0)):
        kp[left], kp[rgt] = at(radius * np.sin(np.pi / 2 + yaw), b), at(radius * np.sin(-np.pi / 2 + yaw), b)
    tilt = rng.normal(0, 0.2)
    head_right = np.cos(tilt) * right - np.sin(tilt) * up
    head_up = np.sin(tilt) * right + np.cos(tilt) * up
    head = neck + 0.10 * height * head_up
    head_yaw = yaw + rng.normal(0, 0.5)  # the head turns on the shoulders
    unlabeled = []
    for k, azimuth, elevation, dist, min_cos in _FACE:
        kp[k] = head + HEAD_RADIUS * height * (dist * np.sin(azimuth + head_yaw) * head_right + elevation * head_up)
        if np.cos(azimuth + head_yaw) < min_cos:
            unlabeled.append(k)

    def limb(root: int, mid: int, end: int, lengths: Tuple[float, float], raise_: Tuple[float, float],
             bend: Tuple[float, float]) -> None:
        """Place ``mid`` and ``end`` from ``root``: segment ``lengths`` (of the height); the first segment raised
        from hanging down, and the second bent from it, by uniform angles in the given ranges (radians)."""
        out = np.sign(np.dot(kp[root], right)) or 1.0  # rotating away from the body's midline
        a0 = rng.uniform(*raise_)
        a1 = a0 + rng.choice([-1.0, 1.0]) * rng.uniform(*bend)
        shorten = rng.uniform(0.75, 1.0, 2)  # limbs pointing at the camera look shorter
        kp[mid] = kp[root] + height * lengths[0] * shorten[0] * (out * np.sin(a0) * right - np.cos(a0) * up)
        kp[end] = kp[mid] + height * lengths[1] * shorten[1] * (out * np.sin(a1) * right - np.cos(a1) * up)

    for sho, elb, wri in ((L_SHO, L_ELB, L_WRI), (R_SHO, R_ELB, R_WRI)):
        limb(sho, elb, wri, (0.17, 0.15), (-0.4, 2.6), (0.0, 2.3))
    for hip, kne, ank in ((L_HIP, L_KNE, L_ANK), (R_HIP, R_KNE, R_ANK)):
        limb(hip, kne, ank, (0.24, 0.23), (-0.25, 0.6), (0.0, 1.4))
    far = 'l' if np.sin(yaw) >= 0 else 'r'  # the left side's depth towards the camera is -sin(yaw)
    return dict(kp=kp, neck=neck, head=head, far=far, unlabeled=unlabeled)


def _disc_radius(height: float) -> int:
    """Radius (px) of the joint discs of a person ``height`` px tall: at least 3 so JPEG keeps their colour."""
    return int(np.clip(round(0.012 * height), 3, 6))


def _draw_person(canvas: _Canvas, rng: np.random.Generator, pid: int, kp: np.ndarray, pose: dict,
                 height: float) -> Tuple[List[int], List[int]]:
    """Draw one person back to front, then the joint discs; returns (drawn joints, disc pixel counts)."""
    base = pid * _LABELS_PER_PERSON
    shirt, pants, skin = _color(rng), _color(rng), _color(rng, 60, 230)
    arm_t, leg_t = max(int(0.055 * height), 2), max(int(0.075 * height), 2)
    far = pose['far']

    def draw_limbs(side: str, layer: int) -> None:
        sho, elb, wri, hip, kne, ank = _SIDES[side]
        for a, b, col, t in ((hip, kne, pants, leg_t), (kne, ank, pants, leg_t), (sho, elb, shirt, arm_t),
                             (elb, wri, skin, arm_t)):
            canvas.line(kp[a], kp[b], col, t, base + _BODY_LABEL + layer)

    draw_limbs(far, 0)
    body = base + _BODY_LABEL + 1
    canvas.polygon(kp[[L_SHO, R_SHO, R_HIP, L_HIP]], shirt, body)
    canvas.line(kp[L_SHO], kp[R_SHO], shirt, arm_t, body)  # rounds off a torso seen from the side
    canvas.line(kp[L_HIP], kp[R_HIP], pants, leg_t, body)
    canvas.line(pose['neck'], pose['head'], skin, max(int(0.04 * height), 1), body)
    canvas.circle(pose['head'], max(int(HEAD_RADIUS * height), 2), skin, body)
    draw_limbs('r' if far == 'l' else 'l', 2)

    _, far_elb, far_wri, _, far_kne, far_ank = _SIDES[far]

    def hidden(k: int) -> bool:
        # A far-side elbow, wrist, knee or ankle under the torso or a near limb is self-occluded.
        covered = canvas.label[kp[k, 1], kp[k, 0]] > base + _BODY_LABEL
        return k in pose['unlabeled'] or (k in (far_elb, far_wri, far_kne, far_ank) and covered)

    drawn = [int(k) for k in np.flatnonzero(_inside(kp, canvas.label.shape)) if not hidden(k)]
    radius = _disc_radius(height)
    counts = []
    for k in drawn:
        canvas.circle(kp[k], radius, tuple(int(c) for c in JOINT_COLORS_BGR[k]), base + 1 + k)
        counts.append(canvas.count(tuple(kp[k]), radius, base + 1 + k))
    return drawn, counts


def _draw_occluders(canvas: _Canvas, rng: np.random.Generator, people: List[Tuple[np.ndarray, float]],
                    mean: float) -> None:
    """Draw Poisson(mean) shapes, most of them over a person, so some joints get hidden (v=1)."""
    h, w = canvas.label.shape
    for _ in range(int(rng.poisson(mean))):
        if people and rng.random() < 0.8:
            kp, size = people[int(rng.integers(len(people)))]
            centre = kp[int(rng.integers(NUM_KEYPOINTS))] + rng.normal(0, 0.1 * size, 2)
        else:
            size, centre = 0.5 * h, rng.uniform((0, 0), (w, h))
        half = np.maximum(rng.uniform(0.05, 0.2, 2) * size, 3)
        kind, color = rng.integers(3), _color(rng)
        if kind == 0:
            canvas.polygon(centre + half * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]), color, OCCLUDER_LABEL)
        elif kind == 1:
            axes = (int(half[0]), int(half[1]))
            canvas.ellipse(centre, axes, float(rng.uniform(0, 180)), color, OCCLUDER_LABEL)
        else:  # a random star-shaped polygon
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            radii = rng.uniform(0.4, 1.0, angles.size)[:, None] * half
            canvas.polygon(centre + radii * np.stack([np.cos(angles), np.sin(angles)], 1), color, OCCLUDER_LABEL)


def _visible_extent(label: np.ndarray, pid: int) -> Tuple[Optional[Tuple[int, int, int, int]], int, list]:
    """Bounding box (x, y, w, h), pixel area and outline polygons of the pixels person ``pid`` still owns."""
    mask = (label // _LABELS_PER_PERSON) == pid
    area = int(np.count_nonzero(mask))
    if area == 0:
        return None, 0, []
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    bbox = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    # A 1 px tolerance drops the staircase of rasterised edges: ~5x fewer points, same mask to the pixel.
    contours = [cv2.approxPolyDP(c, 1.0, True) for c in contours]
    polygons = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
    return bbox, area, polygons


def render_scene(rng: np.random.Generator, image_size: Tuple[int, int],
                 params: SceneParams) -> Tuple[np.ndarray, List[RenderedPerson]]:
    """Render one scene.

    Args:
        rng: the only source of randomness, so a seeded generator gives the same scene.
        image_size: (width, height) in pixels.
        params: what the scene may contain.

    Returns:
        (image, people): the (height, width, 3) uint8 BGR image and every person drawn, in drawing order (far to
        near), including those left with nothing visible.
    """
    width, height = image_size
    canvas = _Canvas(render_background(rng, width, height))
    n_people = int(rng.integers(params.people_per_image[0], params.people_per_image[1] + 1))
    lo, hi = np.log(params.height_frac)
    sizes = np.exp(rng.uniform(lo, hi, n_people)) * height
    small = rng.random(n_people) < params.small_prob
    sizes[small] = rng.uniform(0.06, 0.2, int(small.sum())) * height
    sizes = np.sort(sizes)  # small people are further away, so they are drawn first

    people, drawn_discs = [], []
    for pid, size in enumerate(sizes, start=1):
        back = rng.random() < params.back_view_prob
        pose = _pose(rng, size, params.lean_std, back)
        # The pelvis sits 0.45 * size below the head top and 0.5 * size above the ankles.
        slack = 0.35 * size if rng.random() < params.truncation_prob else -0.25 * size
        x_lo, x_hi = -slack, width + slack
        y_lo, y_hi = 0.45 * size - slack, height - 0.5 * size + slack
        pelvis = np.array([rng.uniform(x_lo, max(x_hi, x_lo)), rng.uniform(y_lo, max(y_hi, y_lo))])
        aspect = np.array([rng.uniform(0.85, 1.15), 1.0])  # slimmer or broader people
        kp = np.round(pose['kp'] * aspect + pelvis).astype(np.int64)
        pose['neck'], pose['head'] = (pose[k] * aspect + pelvis for k in ('neck', 'head'))
        people.append((kp, size))
        drawn_discs.append(_draw_person(canvas, rng, pid, kp, pose, size) + (pose['unlabeled'],))

    _draw_occluders(canvas, rng, people, params.occluders_mean)

    result = []
    for pid, ((kp, size), (drawn, counts, unlabeled)) in enumerate(zip(people, drawn_discs), start=1):
        radius = _disc_radius(size)
        visible = np.ones(NUM_KEYPOINTS, np.int64)  # labeled but hidden unless its disc survived intact
        for k, n0 in zip(drawn, counts):
            if canvas.count(tuple(kp[k]), radius, pid * _LABELS_PER_PERSON + 1 + k) == n0:
                visible[k] = 2
        visible[unlabeled] = 0
        visible[~_inside(kp, canvas.label.shape)] = 0
        bbox, area, polygons = _visible_extent(canvas.label, pid)
        result.append(RenderedPerson(keypoints=kp, visible=visible, bbox=bbox, area=area, polygons=polygons))
    return canvas.image, result
