"""Interpretability: attention weights and their statistics, attention rollout, the logit lens.

Every function takes a gptlab `GPT` and token ids and returns tensors or plain dicts, so the same
numbers feed tables, JSON and HTML views.
"""
