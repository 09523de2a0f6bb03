"""Foundation models: the registry of named, sha256-pinned model files kept in storage, the one
checked loader, heads, offline stand-ins."""
