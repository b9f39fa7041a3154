"""Polygons as a topology for the browser: each shared border stored once.

The unit coverage is quantized to an integer grid, every ring is cut into *arcs* where
the unit on its other side changes, and an arc shared by two units is kept once (the way
TopoJSON does it), so the page draws unit fills, territory borders (the arcs whose two
units lie in different territories) and highlights from one set of coordinates, and can
redraw the borders when a unit changes territory. Arcs are delta-coded and packed as
text with the variable-length encoding of Google's polyline format. All of it is
vectorized numpy over the whole coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

__all__ = ["Topology", "encode_ints", "grid_step", "topology"]

_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
_HASH_MULT2 = np.uint64(0xC2B2AE3D27D4EB4F)


@dataclass(frozen=True)
class Topology:
    """Arcs and the polygons built from them.

    ``arc_len`` vertices per arc; ``coords`` their integer grid coordinates (``x, y``,
    concatenated arc after arc); ``owners`` the one or two features each arc bounds (-1:
    none, the edge of the map). Feature ``f`` has ``parts[f]`` polygons, polygon ``p``
    ``rings[p]`` rings, ring ``r`` ``ring_arcs[r]`` arcs, listed in ``refs`` (``i`` for arc
    ``i``, ``~i`` for arc ``i`` reversed). Grid coordinates map back to degrees as
    ``origin + step * xy``.
    """

    origin: tuple[float, float]
    step: float
    arc_len: np.ndarray
    coords: np.ndarray
    owners: np.ndarray
    parts: np.ndarray
    rings: np.ndarray
    ring_arcs: np.ndarray
    refs: np.ndarray

    @property
    def n_arcs(self) -> int:
        return len(self.arc_len)

    def payload(self) -> dict:
        """The JSON-ready form read by the page's ``pmTopology`` (coordinates as text)."""
        deltas = _arc_deltas(self.coords, self.arc_len)
        return {
            "origin": [round(self.origin[0], 9), round(self.origin[1], 9)],
            "step": self.step,
            "arcLen": self.arc_len.tolist(),
            "arcs": encode_ints(deltas.ravel()),
            "owners": self.owners.ravel().tolist(),
            "parts": self.parts.tolist(),
            "rings": self.rings.tolist(),
            "ringArcs": self.ring_arcs.tolist(),
            "refs": self.refs.tolist(),
        }


def grid_step(bounds: tuple[float, float, float, float], cells: float = 200_000.0) -> float:
    """A round grid step (1, 2 or 5 times a power of ten, in degrees) giving about
    ``cells`` steps across the diagonal of ``bounds``: ~7 m for California, finer
    for a city, so quantization stays well under the display simplification."""
    minx, miny, maxx, maxy = bounds
    diag = float(np.hypot(maxx - minx, maxy - miny)) or 1e-3
    raw = diag / cells
    power = 10.0 ** np.floor(np.log10(raw))
    for m in (1.0, 2.0, 5.0):
        if m * power >= raw * 0.999:
            return float(m * power)
    return float(10 * power)


def topology(geoms: np.ndarray, step: float, origin: tuple[float, float]) -> Topology:
    """Build the arc topology of polygons ``geoms`` (a coverage shares its borders;
    anything else still draws, its borders simply stored per polygon)."""
    geoms = np.asarray(geoms, dtype=object)
    n_feat = len(geoms)
    parts, feat = shapely.get_parts(geoms, return_index=True)
    poly = shapely.get_type_id(parts) == 3
    parts, feat = parts[poly], feat[poly]
    rings, part = shapely.get_rings(parts, return_index=True)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    q = np.rint((xy - np.asarray(origin)) / step).astype(np.int64)

    # drop closing vertices and repeats created by the grid, then rings left degenerate
    n_rings = len(rings)
    prev_same = np.r_[False, (ring[1:] == ring[:-1]) & (q[1:] == q[:-1]).all(axis=1)]
    q, ring = q[~prev_same], ring[~prev_same]
    first = np.r_[True, ring[1:] != ring[:-1]]
    start_of = np.flatnonzero(first)
    last = np.r_[start_of[1:] - 1, len(ring) - 1]
    closing = np.zeros(len(ring), dtype=bool)
    closing[last] = (q[last] == q[start_of]).all(axis=1)
    q, ring = q[~closing], ring[~closing]
    count = np.bincount(ring, minlength=n_rings)
    # a polygon whose shell collapsed goes whole (its holes too)
    shell = np.r_[True, part[1:] != part[:-1]]
    part_ok = np.ones(len(parts), dtype=bool)
    part_ok[part[shell]] = count[shell] >= 3
    ring_ok = (count >= 3) & part_ok[part]
    keep = ring_ok[ring]
    q, ring = q[keep], ring[keep]
    ring_ids = np.flatnonzero(ring_ok)
    ring = np.searchsorted(ring_ids, ring)  # renumber kept rings 0..R-1
    ring_part = part[ring_ids]
    part_ids = np.flatnonzero(part_ok)
    ring_part = np.searchsorted(part_ids, ring_part)
    part_feat = feat[part_ids]
    n = np.bincount(ring, minlength=len(ring_ids))
    offset = np.r_[0, np.cumsum(n)[:-1]]
    ring_feat = part_feat[ring_part]

    # point ids, segments and the unit across each segment
    key = (q[:, 0] << 32) | (q[:, 1] & 0xFFFFFFFF)
    uniq_key, pid = np.unique(key, return_inverse=True)
    pid = pid.ravel()
    pos = np.arange(len(pid)) - offset[ring]
    nxt = offset[ring] + (pos + 1) % n[ring]
    a, b = pid, pid[nxt]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    seg_key = lo * np.int64(len(uniq_key)) + hi
    seg_feat = ring_feat[ring]
    order = np.argsort(seg_key, kind="stable")
    sk = seg_key[order]
    same_next = np.r_[sk[1:] == sk[:-1], False]
    same_prev = np.r_[False, sk[1:] == sk[:-1]]
    pair = same_next & ~same_prev & ~np.r_[same_next[1:], False]  # exactly two copies
    other = np.full(len(sk), -1, dtype=np.int64)
    i = np.flatnonzero(pair)
    fo = seg_feat[order]
    other[i], other[i + 1] = fo[i + 1], fo[i]
    seg_other = np.empty_like(other)
    seg_other[order] = other

    # arcs start where the unit across changes; rings with one neighbour all round start
    # at their smallest point, so both copies of a closed arc begin at the same vertex
    prev = offset[ring] + (pos - 1) % n[ring]
    brk = seg_other != seg_other[prev]
    rot = _argmin_per_ring(pid, ring, offset)
    with_brk, at = np.unique(ring[brk], return_index=True)
    rot[with_brk] = pos[np.flatnonzero(brk)[at]]
    src = offset[ring] + (pos + rot[ring]) % n[ring]  # each ring rotated to its first break
    r_pid, r_brk = pid[src], brk[src]
    r_brk[offset] = True

    # one arc from each break to the next, its end vertex included
    arc_start = np.flatnonzero(r_brk)
    arc_ring = ring[arc_start]
    arc_end = np.r_[arc_start[1:], 0]
    last_arc = np.r_[arc_ring[1:] != arc_ring[:-1], True]
    arc_end[last_arc] = (offset + n)[arc_ring[last_arc]]
    arc_len = arc_end - arc_start + 1
    rid = np.repeat(arc_ring, arc_len)
    idx = np.repeat(arc_start, arc_len) + _ranges(arc_len)
    idx = np.where(idx >= (offset + n)[rid], offset[rid], idx)  # the closing vertex
    seq = r_pid[idx]

    # the same arc met from both sides: same points, opposite order; keep it once
    begin = np.r_[0, np.cumsum(arc_len)[:-1]]
    end = begin + arc_len - 1
    forward = (seq[begin] < seq[end]) | (
        (seq[begin] == seq[end]) & (seq[begin + 1] <= seq[end - 1])
    )
    arc_of = np.repeat(np.arange(len(arc_len)), arc_len)
    k = _ranges(arc_len)
    k = np.where(forward[arc_of], k, arc_len[arc_of] - 1 - k)
    ident = np.stack(
        [
            _hash(seq, k, arc_of, len(arc_len), _HASH_MULT),
            _hash(seq, k, arc_of, len(arc_len), _HASH_MULT2),
            arc_len.astype(np.uint64),
        ],
        axis=1,
    )
    _, first_use, arc_id = np.unique(ident, axis=0, return_index=True, return_inverse=True)
    arc_id = arc_id.ravel()
    refs = np.where(forward == forward[first_use][arc_id], arc_id, ~arc_id)
    use_feat = ring_feat[arc_ring]
    owners = np.full((len(first_use), 2), -1, dtype=np.int64)
    owners[:, 0] = use_feat[first_use]
    later = np.ones(len(arc_id), dtype=bool)
    later[first_use] = False
    owners[arc_id[later], 1] = use_feat[later]

    kept_len = arc_len[first_use]
    pts = seq[np.repeat(begin[first_use], kept_len) + _ranges(kept_len)]
    xs = uniq_key[pts] >> 32
    ys = uniq_key[pts] & 0xFFFFFFFF
    ys = np.where(ys >= 2**31, ys - 2**32, ys)
    return Topology(
        origin=(float(origin[0]), float(origin[1])),
        step=float(step),
        arc_len=kept_len,
        coords=np.column_stack([xs, ys]),
        owners=owners,
        parts=np.bincount(part_feat, minlength=n_feat),
        rings=np.bincount(ring_part, minlength=len(part_ids)),
        ring_arcs=np.bincount(arc_ring, minlength=len(n)),
        refs=refs,
    )


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """0..L-1 for each length L, concatenated."""
    total = int(lengths.sum())
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    return np.arange(total) - np.repeat(starts, lengths)


def _argmin_per_ring(pid: np.ndarray, ring: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Position of the smallest point id within each ring (rings numbered 0..R-1)."""
    order = np.lexsort((pid, ring))
    firsts = order[np.r_[True, ring[order][1:] != ring[order][:-1]]]
    return firsts - offset


def _hash(
    seq: np.ndarray, k: np.ndarray, group: np.ndarray, n_groups: int, mult: np.uint64
) -> np.ndarray:
    """An order-dependent 64-bit hash of each group's sequence (position ``k`` in it)."""
    with np.errstate(over="ignore"):
        w = (seq.astype(np.uint64) + np.uint64(1)) * mult
        w ^= w >> np.uint64(29)
        w = w * (k.astype(np.uint64) * np.uint64(2) + np.uint64(1))
        w ^= w >> np.uint64(31)
    out = np.zeros(n_groups, dtype=np.uint64)
    np.add.at(out, group, w)
    return out


def _arc_deltas(coords: np.ndarray, arc_len: np.ndarray) -> np.ndarray:
    """Each arc's first vertex as is, the rest as differences from the previous one."""
    d = np.diff(coords, axis=0, prepend=np.zeros((1, 2), dtype=coords.dtype))
    starts = np.r_[0, np.cumsum(arc_len)[:-1]]
    d[starts] = coords[starts]
    return d


def encode_ints(values: np.ndarray) -> str:
    """Signed integers as text: zigzag, then 5-bit groups as characters 63..126, a set
    bit 32 meaning "more follows" (the encoding of Google's polyline format)."""
    v = np.asarray(values, dtype=np.int64)
    z = ((v << 1) ^ (v >> 63)).astype(np.uint64)
    bits = np.zeros(len(z), dtype=np.int64)
    nz = z > 0
    bits[nz] = np.floor(np.log2(z[nz].astype(np.float64))).astype(np.int64) + 1
    groups = np.maximum(1, -(-bits // 5))
    g = int(groups.max(initial=1))
    shifts = (np.arange(g, dtype=np.uint64) * np.uint64(5))[None, :]
    chunk = ((z[:, None] >> shifts) & np.uint64(31)).astype(np.int64)
    more = np.arange(g)[None, :] < (groups[:, None] - 1)
    chars = chunk + 63 + 32 * more
    used = np.arange(g)[None, :] < groups[:, None]
    return chars[used].astype(np.uint8).tobytes().decode("ascii")
