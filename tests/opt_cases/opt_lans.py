from cases import OptCase

CASE = OptCase(
    name="lans",
    configs={
        "default": {},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.02, "learning_rate": 0.01},
        "betas": {"beta1": 0.5, "beta2": 0.8, "epsilon": 1e-4, "rescale_grad": 0.5},
        "bounds": {"lower_bound": 1e-3, "upper_bound": 2.0, "wd": 0.03},
        "lr_wd_big": {"learning_rate": 0.5, "wd": 0.5},
    },
    errors=[
        ({"beta1": 1.5}, ValueError, "beta1"),
        ({"beta2": 1.0}, ValueError, "beta2"),
        ({"epsilon": -1e-6}, ValueError, "epsilon"),
        ({"lower_bound": -0.5}, ValueError, "lower_bound"),
        ({"bias_correction": False}, TypeError, "bias_correction"),   # LANS always corrects
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
