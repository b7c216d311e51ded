from cases import OptCase

CASE = OptCase(
    name="adadelta",
    configs={
        "default": {},
        "wd+lr": {"wd": 0.05, "learning_rate": 0.5},
        "clip+rescale": {"clip_gradient": 0.4, "rescale_grad": 0.7, "wd": 0.02},
        "rho+epsilon": {"rho": 0.5, "epsilon": 1e-3},
    },
    errors=[
        ({"rho": 1.5}, ValueError, "rho"),
        ({"rho": -0.1}, ValueError, "rho"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": -1e-6}, ValueError, "epsilon"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
