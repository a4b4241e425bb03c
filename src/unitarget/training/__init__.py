"""Training: tasks and masks, batch samplers, loss balancing, schedule, checkpoints, the loop."""
