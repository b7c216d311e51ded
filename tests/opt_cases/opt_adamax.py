from cases import OptCase

CASE = OptCase(
    name="adamax",
    configs={
        "default": {},
        "betas": {"beta1": 0.5, "beta2": 0.8, "learning_rate": 0.01},
        "beta2=1": {"beta2": 1.0},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.4},
        "rescale+wd": {"rescale_grad": 0.14, "wd": 0.03, "epsilon": 1e-6},
    },
    errors=[
        ({"beta1": 1.0}, ValueError, "beta1"),
        ({"beta2": 1.01}, ValueError, r"beta2 must be in \[0, 1\]"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
