// Datasets, image decoding and preprocessing, metrics and reports for `validate`.
