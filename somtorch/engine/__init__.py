"""The SOM engine: distances under rotations/flips, online training, mapping and metrics."""

from somtorch.engine._malloc import tune_malloc
from somtorch.engine.approx import ApproxMapper, make_mapper, matching_agreement
from somtorch.engine.batch import BatchTrainer
from somtorch.engine.data import ImageSource, as_image_source
from somtorch.engine.distance import DistanceEngine, best_match
from somtorch.engine.mapping import Mapper, MappingResult, precision_agreement
from somtorch.engine.metrics import quality_metrics, quantization_error, topographic_error
from somtorch.engine.neighbourhood import Neighbourhood, neighbourhood_function
from somtorch.engine.online import DenseStep, OnlineStep, ParityStep, online_step
from somtorch.engine.scale import ScaleMapper, scale_factors, zoom_images
from somtorch.engine.som import INIT_METHODS, RotationInvariantSOM, SOMGeometry
from somtorch.engine.training import Trainer, TrainingHistory, progress_ticks, shuffle_order

__all__ = [
    "ImageSource", "as_image_source", "DistanceEngine", "best_match", "Mapper", "MappingResult",
    "precision_agreement", "quality_metrics", "quantization_error", "topographic_error",
    "Neighbourhood", "neighbourhood_function", "INIT_METHODS", "RotationInvariantSOM", "SOMGeometry",
    "Trainer", "TrainingHistory", "progress_ticks", "shuffle_order", "BatchTrainer", "tune_malloc",
    "OnlineStep", "DenseStep", "ParityStep", "online_step",
    "ApproxMapper", "ScaleMapper", "make_mapper", "matching_agreement", "scale_factors", "zoom_images",
]
