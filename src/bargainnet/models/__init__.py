"""BargainNet networks: domain code extractor, generator, the combined model and weight conversion."""
