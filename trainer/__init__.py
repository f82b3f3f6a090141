"""Online continual GRPO trainer on DeepSpeed, and model redeployment.

Built so far (issue 5): GRPO grouping (task key, entity overlap), group-relative advantages,
rolling windows and the offsets a trained window commits.
"""
