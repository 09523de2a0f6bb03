"""Foundation models: names and the published catalogue, the sandbox that reads an uploaded file
and the safe form it keeps, the one loader (rebuilt from the safe form), heads, pins, the models
folder, the registry and its store, offline stand-ins."""
