"""Tuned kernels: the performance engineering of the course's answers, kept apart from them.

Each kernel has the contract and the result of a textbook tier in :mod:`workshop.reference`
(the version a learner reads and compares with); the exercise registry names it
(``Exercise.kernels``), the registry tests check it on every case beside the textbook tiers, and
``make bench`` times learner-style code, the textbook reference, the kernel and the industry op
side by side. Like the references, the kernels are answers: the grader's sandbox hides them.
"""
