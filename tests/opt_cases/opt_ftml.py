from cases import OptCase

CASE = OptCase(
    name="ftml",
    configs={
        "default": {},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.3},
        "betas+lr": {"beta1": 0.5, "beta2": 0.8, "learning_rate": 0.01},
        "rescale+eps": {"rescale_grad": 0.25, "epsilon": 1e-4, "wd": 0.01},
    },
    errors=[
        ({"beta1": 1.0}, ValueError, "beta1"),
        ({"beta1": -0.1}, ValueError, "beta1"),
        ({"beta2": 1.0}, ValueError, "beta2"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": -1e-8}, ValueError, "epsilon"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
