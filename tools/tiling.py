"""Tiling and box fusion for the tools; the code lives in ``pipeline/tiling.py`` (the pipeline's crops use it too)."""
from pipeline.tiling import (crop_image, cut_by_inner_edge, detect_tiled, flip_boxes, merge_with_crops,  # noqa: F401
                             shift, tile_grid, tile_starts, weighted_boxes_fusion)

__all__ = ["crop_image", "cut_by_inner_edge", "detect_tiled", "flip_boxes", "merge_with_crops", "shift",
           "tile_grid", "tile_starts", "weighted_boxes_fusion"]
