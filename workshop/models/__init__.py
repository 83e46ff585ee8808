"""Models and training helpers a learner may call freely.

  cnn                  the small classifier and the backbone
  rpn                  the RPN head (a Keras 3 layer), its loss, and the seeded anchor-sampling
                       priority that every ``rpn_targets`` tier shares
  detector             the two-stage detector whose geometric stages come from the registry

Importing this package imports nothing heavy; TensorFlow and Keras load when a model is built.
"""
