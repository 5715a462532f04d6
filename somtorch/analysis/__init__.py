"""Analysis of trained SOMs: image/neuron frames, quality metrics, sampling, knowledge transfer."""

from somtorch.analysis.frames import (
    CoordinateTransformer,
    image_to_neuron_coords,
    neuron_to_image_coords,
    neuron_to_sky,
    pink_spatial_transform,
    pixel_to_sky,
    sky_to_neuron,
    sky_to_pixel,
    transform_images,
    trim_neuron,
)
from somtorch.analysis.labels import (
    ClassifierReport,
    DistanceClassifier,
    KnowledgeTransfer,
    catalogue_columns,
    inspection_table,
    join_neuron_table,
    knn_predict,
    label_evidence,
    merge_catalogue,
    read_neuron_table,
    train_distance_classifier,
    transfer_labels,
    write_neuron_table,
)
from somtorch.analysis.lookalike import find_lookalikes, template_neurons, write_template_som
from somtorch.analysis.quality import (
    best_two,
    coherence,
    convergence_curve,
    intermediate_soms,
    neuron_distance_stats,
    neuron_purity,
    quality_report,
    quantization_error,
    topographic_error,
    u_matrix,
)
from somtorch.analysis.sampler import SOMSampler, weighted_kmeans
from somtorch.analysis.valid import (
    area_ratio,
    compute_distances_between_valid_pixels,
    distances_between_valid_pixels,
    valid_pixel_coords,
    valid_region,
)

__all__ = [
    "KnowledgeTransfer", "catalogue_columns", "merge_catalogue", "transfer_labels",
    "label_evidence", "inspection_table", "write_neuron_table", "read_neuron_table",
    "join_neuron_table", "DistanceClassifier", "knn_predict", "ClassifierReport",
    "train_distance_classifier",
    "CoordinateTransformer", "image_to_neuron_coords", "neuron_to_image_coords", "neuron_to_sky",
    "pink_spatial_transform", "pixel_to_sky", "sky_to_neuron", "sky_to_pixel", "transform_images",
    "trim_neuron", "best_two", "coherence", "convergence_curve", "intermediate_soms",
    "neuron_distance_stats", "neuron_purity", "quality_report", "quantization_error", "topographic_error", "u_matrix",
    "SOMSampler", "weighted_kmeans", "area_ratio", "compute_distances_between_valid_pixels",
    "distances_between_valid_pixels", "valid_pixel_coords", "valid_region",
    "find_lookalikes", "template_neurons", "write_template_som",
]
