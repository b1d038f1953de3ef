"""Quality assurance: Mask AP stratified by occlusion tier (more to come: agreement,
pre-label analytics, review sampling, reports)."""

from napari_instseg.core.qa.metrics import EvalParams, MaskEval, Scores, prepare, scores_of, stratified_ap

__all__ = ["EvalParams", "MaskEval", "Scores", "prepare", "scores_of", "stratified_ap"]
