"""A workbench for accuracy predictors on NAS-Bench-101.

Modules
-------
schema
    The HDF5 layout (schema v1): constants, an atomic writer and a checked
    reader.
tfrecord
    TFRecord framing with CRC-32C checks, and the NAS-Bench-101 record payload
    (JSON, base64, ``ModelMetrics`` protobuf): reading and writing.
convert
    Official tfrecord file -> schema-v1 arrays, using both cores.
download
    Fetching the published files with resume and SHA-256 checks.
cells
    Cells (matrix + ops): validation, pruning and the module hash.
dataset
    A loaded schema-v1 file: columns, look-ups and targets.
encodings
    Feature encodings of cells, vectorised over all cells, and a registry.
predictors, neural
    Predictors as scikit-learn estimators; ``neural`` holds the Keras MLP and
    graph convolutional network and imports TensorFlow only when fitting.
evaluation
    Metrics, labels, nested splits, protocols, search, the experiment runner
    and the noise ceiling.
plots, notebook_support
    The figures and helpers of ``analysis.ipynb``, and its headless runner
    (``python -m utils.notebook_support``).

Submodules are imported on use, so that ``import utils`` stays light.
"""
