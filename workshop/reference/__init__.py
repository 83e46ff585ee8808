"""The answers: every exercise's reference implementation, in up to three tiers.

``*_loops`` (plain Python), ``*_numpy`` (vectorized, float64) and ``*_tf`` (pure TensorFlow,
tensors in and out). The grader runs learner code with this package out of reach; learners'
notebooks reach it only through the self-checks.
"""
