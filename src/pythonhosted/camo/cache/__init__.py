"""The cache in front of camo: two tiers (memory, disk) bounded by bytes, keyed by target URL."""
