//! Data safety: storage-in-use protection, immortal namespaces, dryRun and nesting-depth checks.
