"""Machine-checkable inventory of PYINK's public API (``shared/spec/pyink-features.md`` §0-§10).

``SIGNATURES`` maps each public function, class (its constructor) and method to PYINK's
signature as written in the spec; ``CONSTANTS`` lists PYINK's module constants; ``ATTRIBUTES``
lists the attributes and properties PYINK users read on instances. ``tests/test_pyink_names.py``
checks that :mod:`somtorch.pyink` has every one with a compatible signature (same parameter
names, order, kinds and defaults; extra parameters only after them, with defaults).
A default of ``...`` means "not stated in the spec" (only its presence is checked).
"""

SIGNATURES = {
    # preprocessing
    "rms_estimate": "(data, mode='mad', clip_rounds=2, bin_perc=0.25, outlier_thres=3.0, nan_check=True)",
    "minmax": "(data, mask=None)",
    "square_mask": "(data, size=None, scale=None)",
    "circular_mask": "(data, radius=None, scale=None)",
    "island_segmentation": "(data, threshold, return_background=False, minimum_island_size=5)",
    "convex_hull": "(data, threshold=0.01)",
    "convex_hull_smoothed": "(data, sigma, threshold=0.01)",
    # utils
    "pink_spatial_transform": "(img, transform, reverse=False)",
    "compute_distances_between_valid_pixels": "(mask)",
    "distances_between_valid_pixels": "(mask)",
    "PathHelper": "(path, clobber=False)",
    "area_ratio": "(filter1, filter2, filter_includes=None, filter_excludes=None, empty_check=True)",
    "valid_region": "(filter, filter_includes=None, filter_excludes=None)",
    # binwrap
    "ImageWriter": "(binary_path, data_layout, data_header, comment=None, clobber=False)",
    "ImageWriter.add": "(self, img, nonfinite_check=True, attributes=None)",
    "ImageWriter.close": "(self)",
    "ImageWriter.save_records": "(self, path=None)",
    "ImageReader": "(path, record_path=None)",
    "ImageReader.transform": "(self, idx, transform)",
    "ImageReader.transform_images": "(self, idxs, transforms)",
    "ImageReader.reweight": "(self, binary_path, old_weights, new_weights, verbose=False)",
    "SOM": "(path)",
    "SOM.plot": "(self, channel=0, fig=None, show_cbar=False, outfile=None, cmap='viridis')",
    "SOM.plot_neuron": "(self, neuron=(0, 0), fig=None, trim_to_img_shape=False, show_ticks=False)",
    "SOM.explore": "(self, start=(0, 0), **kwargs)",
    "SOMWriter": "(binary_path, som_shape, neuron_shape, comment=None, clobber=False)",
    "SOMWriter.add": "(self, neuron)",
    "SOMWriter.close": "(self)",
    "Mapping": "(path, bmu_mask=None)",
    "Mapping.bmu": "(self, idx=None, N=0, squeeze=True, return_idx=False, return_tuples=False)",
    "Mapping.bmu_counts": "(self, **bmu_kwargs)",
    "Mapping.bmu_ed": "(self, idx=None, N=0)",
    "Mapping.images_with_bmu": "(self, key, **bmu_kwargs)",
    "Mapping.map_labels": "(self, labels, idx=None)",
    "Mapping.coherence": "(self, idx=None, cyclic=False)",
    "Mapping.worst_matches": "(self, N=None, frac=None, neuron=None, return_ed=False)",
    "Transform": "(path)",
    "SOMSet": "(som, mapping, transform)",
    "header_offset": "(path)",
    "resolve_data_type": "(x)",
    # annotator
    "Annotation": "(neuron)",
    "Annotation.resolve_label": "(self, value, pedantic=True)",
    "Annotation.filter_contains": "(self, channel=0)",
    "Annotator": "(som, results=None, save=True)",
    "Annotator.annotate_neuron": ("(self, key, return_callback=False, cmap='bwr', labeling=False, update=False, "
                                  "colorbar=True, vmin=None, vmax=None, grid=True)"),
    "Annotator.interactive_annotate": "(self, *args, labeling=True, resume=True, **kwargs)",
    "Annotator.save_annotation_results": "(self, path=None)",
    "Annotator.unique_labels": "(self, labels_only=True)",
    "annotator.calculate_region_value": "(callback)",
    # analysis
    "trim_neuron": "(neuron2d, img_shape=None)",
    "plot_image": ("(imbin, idx=None, df=None, somset=None, apply_transform=False, transform_neuron=False, "
                   "fig=None, show_bmu=False, show_index=True, wcs=None, grid=False, cmaps=...)"),
    # filteractions
    "CoordinateTransformer": "(center_coord, sky_coords, transform, pixel_scale=u.arcsecond, wcs=None, src_idx=None)",
    "Filter": "(coords, neuron, channel=0, plot=False, data=None)",
    "Filter.coord_label_contains": "(self, label)",
    "Filter.plot": "(self, figure=None, axes=None)",
    "FilterSet": ("(base_catalogue, match_catalogues, annotation, som_set, cpu_cores=None, "
                  "seplimit=1 * u.arcminute, progress=False, **ct_kwargs)"),
    "FilterSet.cookie_cutter": "(self, channel, src_idx)",
    "FilterSet.project": "(self)",
    # collation
    "LabelResolve": "(*args, default=Action.PASS, **kwargs)",
    "Sorter": "(som_set, *args, mode='best_matching_first', **kwargs)",
    "greedy_graph": "(filters, annotations, label_resolve, sorter, src_stats_fn=None, progress=False)",
    "Grouper": "(filters, annotations, label_resolve, sorter, src_stats_fn=None, progress=False)",
    # skypath
    "SkyPath": "(positions, idxs=None)",
    "SkyPath.plot_shortest_path": "(self, ax, *args, **kwargs)",
    "SkyPath.plot_maximum_distance": "(self, ax, *args, **kwargs)",
    "create_separation_set": "(positions, idxs_items=None)",
    "maximum_distance": "(separations)",
    "shortest_path_between": "(separations, start_end, max_iterations=2_000_000, progress=False)",
    # SOMSampler
    "SOMSampler": "(som, N, method='kmeans', **kwargs)",
    "SOMSampler.random_sampler": "(self, N, min_dist=2, max_attempts=100)",
    "SOMSampler.kmeans_sampler": "(self, N, mapping=None)",
    "SOMSampler.visualize": "(self)",
    "SOMSampler.min_distance": "(self, ind)",
    "SOMSampler.add_point": "(self, p)",
    "SOMSampler.random_neuron": "(self)",
}

CONSTANTS = {
    "REC_SUFFIX": "records.pkl",
    "ANT_SUFFIX": "results.pkl",
    "PRIMES": {0: 2, 1: 3, 2: 5, 3: 7, 4: 11, 5: 13, 6: 17, 7: 19, 8: 23, 9: 29, 10: 31, 11: 37, 12: 41,
               13: 43, 14: 47, 15: 53, 16: 59, 17: 61, 18: 67, 19: 71},
}

#: Action members and their values (``auto()`` order).
ACTIONS = {"LINK": 1, "UNLINK": 2, "RESOLVE": 3, "FLAG": 4, "PASS": 5, "NODE_ATTACH": 6, "DATA_ATTACH": 7,
           "TRUE_ATTACH": 8, "FALSE_ATTACH": 9, "ISOLATE": 10}

#: Attributes/properties read on instances (checked on objects built by the tests).
ATTRIBUTES = {
    "ImageWriter": ("binary_path", "data_layout", "data_header", "no_dimensions", "count", "records"),
    "ImageReader": ("data", "header", "img_rank", "img_shape", "records"),
    "SOM": ("data", "header", "som_rank", "som_shape", "neuron_rank", "neuron_shape", "neuron_size"),
    "Mapping": ("data", "header", "som_rank", "som_shape", "srcrange", "bmu_mask"),
    "Transform": ("data", "header", "som_rank", "som_shape"),
    "SOMSet": ("som", "mapping", "transform"),
    "Annotation": ("neuron", "clicks", "filters", "lasso_filters", "labels"),
    "Annotator": ("som", "results"),
    "CoordinateTransformer": ("coords", "center_coord", "pixel_scale", "transform", "wcs", "src_idx"),
    "Filter": ("coords", "product_labels", "coord_labels", "data"),
    "FilterSet": ("filters",),
    "Sorter": ("order", "MODES", "som", "mapper", "transform"),
    "Grouper": ("graph",),
    "SkyPath": ("separations", "maximum_distance", "maximum_position_angle", "shortest_path", "curliness",
                "shortest_path_positions", "maximum_distance_positions"),
    "SOMSampler": ("points", "num_points"),
}

#: PYINK's submodules (``pyink.<name>``), importable as ``somtorch.pyink.<name>``.
SUBMODULES = ("binwrap", "utils", "preprocessing", "annotator", "filteractions", "collation", "skypath",
              "analysis", "SOMSampler")
