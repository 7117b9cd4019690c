"""What is benchmarked: models, datasets and suite files (MLMark's models/, datasets/, config/)."""
