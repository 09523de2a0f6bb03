"""Domain logic of mlft: datasets, foundation models, E0s, strategies, training, storage."""
