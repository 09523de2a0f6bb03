"""How good a model is: accuracy, forgetting, MD stability, structure (RDF) and repulsion."""
