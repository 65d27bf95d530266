"""Security and robustness audits: what a model leaks (memorisation, extraction, membership), how
it breaks (prompt injection, adversarial text, bias, poisoning), and what the mitigations (DP-SGD,
guards, adversarial training, counterfactual augmentation, poison detection) change.

Every audit is a Python function returning an `AuditResult` (gptlab.audit.common): findings with
a value, a confidence interval and a verdict against a threshold, plus plots; `gptlab audit ...`
prints it, writes it as JSON, and `gptlab audit all` assembles one HTML report.
"""
