"""Quality assurance: Mask AP stratified by occlusion tier (:mod:`.metrics`), inter-annotator
agreement and pre-label statistics (:mod:`.agreement`), stratified review samples
(:mod:`.sampling`) and self-contained reports (:mod:`.report`)."""

from napari_instseg.core.qa.agreement import calibration, cohen_kappa, match_instances, prelabel_stats
from napari_instseg.core.qa.metrics import EvalParams, MaskEval, Scores, prepare, scores_of, stratified_ap
from napari_instseg.core.qa.report import QAReport, run_qa
from napari_instseg.core.qa.sampling import error_rates, read_queue, review_sample, wilson_interval, write_queue

__all__ = [
    "EvalParams",
    "MaskEval",
    "QAReport",
    "Scores",
    "calibration",
    "cohen_kappa",
    "error_rates",
    "match_instances",
    "prelabel_stats",
    "prepare",
    "read_queue",
    "review_sample",
    "run_qa",
    "scores_of",
    "stratified_ap",
    "wilson_interval",
    "write_queue",
]
