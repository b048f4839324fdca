"""One module per policy, each behind scheduler.policy.Policy; scheduler.registry names them."""
