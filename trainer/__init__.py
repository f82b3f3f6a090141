"""Online GRPO on rolling windows of scored trajectories, model versions, serving and redeployment.

``windows`` and ``loop`` (the Kafka side), ``advantages`` (on the groups of ``trajstream.grouping``),
``samples``, ``offpolicy``, ``grpo`` and ``window_training`` (TRL's losses under DeepSpeed), ``registry``,
``gate`` and ``announce`` (versions), ``serve`` and ``vllm_deployer`` (serving), ``learn_demo`` and
``learn_env`` (the learning demo), ``tiny`` (small local models), ``commands`` (its CLI).
"""
