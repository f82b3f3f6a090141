"""Online continual GRPO trainer on DeepSpeed, and model redeployment.

Built so far (issue 5): GRPO grouping (task key, entity overlap) and group-relative advantages.
"""
