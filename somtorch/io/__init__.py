"""PINK version-2 binary I/O: images, SOMs, mappings, transforms, records sidecars.

Low level, tensor first (:mod:`somtorch.io.pink`): ``read_images``/``write_images``,
``read_som``/``write_som``, ``read_mapping``/``write_mapping``, ``read_transforms``/
``write_transforms``, ``read_header``, streaming ``MappingWriter``/``TransformWriter``.
PYINK-style wrappers (:mod:`somtorch.io.binwrap`): ``ImageWriter``, ``ImageReader``, ``SOM``,
``SOMWriter``, ``Mapping``, ``Transform``, ``SOMSet``. Every output is written atomically
(:mod:`somtorch.io.atomic`).
"""

from somtorch.io.atomic import AtomicFile, PreallocatedOutput, atomic_output, check_output_path
from somtorch.io.binwrap import SOM, ImageReader, ImageWriter, Mapping, SOMSet, SOMWriter, Transform
from somtorch.io.pink import (
    DATA_TYPES,
    TRANSFORM_DTYPE,
    ImageHeader,
    MappingHeader,
    MappingWriter,
    SOMHeader,
    TransformHeader,
    TransformWriter,
    comment_bytes,
    hex_num_neurons,
    pink_som_dims,
    read_header,
    read_images,
    read_images_header,
    read_mapping,
    read_som,
    read_transforms,
    write_images,
    write_mapping,
    write_som,
    write_transforms,
)
from somtorch.io.records import (
    RECORDS_JSON_SUFFIX,
    RECORDS_PICKLE_SUFFIX,
    read_records,
    records_path,
    to_jsonable,
    write_records,
)

__all__ = [
    "AtomicFile", "PreallocatedOutput", "atomic_output", "check_output_path",
    "SOM", "ImageReader", "ImageWriter", "Mapping", "SOMSet", "SOMWriter", "Transform",
    "DATA_TYPES", "TRANSFORM_DTYPE", "ImageHeader", "MappingHeader", "MappingWriter", "SOMHeader",
    "TransformHeader", "TransformWriter", "comment_bytes", "hex_num_neurons", "pink_som_dims",
    "read_header", "read_images", "read_images_header", "read_mapping", "read_som",
    "read_transforms", "write_images", "write_mapping", "write_som", "write_transforms",
    "RECORDS_JSON_SUFFIX", "RECORDS_PICKLE_SUFFIX", "read_records", "records_path", "to_jsonable",
    "write_records",
]
