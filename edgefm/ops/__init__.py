"""Fleet operations: running stacks, rollouts, the journal, workers."""
