"""Online continual GRPO trainer on DeepSpeed, and model redeployment.

Not built yet (issue 5).
"""
