"""chaos: Jepsen-style chaos testing for leader-follower replicated systems."""
