"""Tools around a model: gradient checks, metrics, cross-validation, PCA, and the
process settings (threads, the allocator)."""
