"""Redis with Sentinel from Debian as a chaos target (registered as entry point `redis`)."""
