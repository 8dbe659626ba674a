"""The default tolerances of a comparison, apart from the report so that the CLI can show them cheaply.

Measured (bench/README.md, "verify"): the two float32 graphs of one network differ by <= 1.2e-6
on every example and <= 1.7e-5 on ResNet-50's deepest BatchNorm layers; real porting mistakes
(padding, epsilon, flatten order, a weight) differ by >= 1e-3.
"""

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
