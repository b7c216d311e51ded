from cases import OptCase

CASE = OptCase(
    name="lamb",
    configs={
        "default": {},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.3, "learning_rate": 0.01},
        "betas": {"beta1": 0.5, "beta2": 0.8, "epsilon": 1e-4, "rescale_grad": 0.5},
        "no_bias_correction": {"bias_correction": False, "wd": 0.01},
        "bounds": {"lower_bound": 1e-3, "upper_bound": 2.0, "wd": 0.03},
        "tight_bounds": {"lower_bound": 50.0, "upper_bound": 60.0},
    },
    errors=[
        ({"beta1": 1.0}, ValueError, "beta1"),
        ({"beta2": -0.1}, ValueError, "beta2"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"lower_bound": -1.0}, ValueError, "lower_bound"),
        ({"upper_bound": "x"}, TypeError, "upper_bound"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"aggregate_num": -1}, ValueError, "aggregate_num"),
    ],
)
