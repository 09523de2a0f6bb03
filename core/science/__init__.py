"""The science of fine-tuning MACE: the job spec, the strategy table, E0s, strategies' mace-torch
arguments, predictions and their cache, descriptors, model checks, exports, replay and
pseudolabels, preflight, cost and the demo foundation."""
