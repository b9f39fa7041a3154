"""Territory building blocks: units (ZCTA, county, H3 or user polygons) and their adjacency."""

from patchmap.units.adjacency import BRIDGE_FACTOR, Adjacency, build_adjacency, h3_adjacency

__all__ = ["BRIDGE_FACTOR", "Adjacency", "build_adjacency", "h3_adjacency"]
