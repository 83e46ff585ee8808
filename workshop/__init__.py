"""Hands-on computer vision workshop.

Subpackages:
  conventions  box formats, conversions and input validation (the one place they are stated)
  reference    the answers: each algorithm in three tiers (loops, numpy, tf); kept out of a
               learner's reach when grading
  exercises    the registry: one declaration per exercise (tiers, cases, comparison, diagnoses)
  grading      self-checks in a notebook and the isolated grader
  models, data, vis   helpers a learner may call freely

`import workshop` stays light: TensorFlow is imported only when a TF tier or a model is used.
"""

__version__ = "0.1.0"
