from cases import OptCase

CASE = OptCase(
    name="adabelief",
    configs={
        "default": {},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.4, "learning_rate": 0.01},
        "no_bias_correction": {"correct_bias": False, "beta1": 0.5, "beta2": 0.8},
        "rescale": {"rescale_grad": 0.14, "wd": 0.03, "epsilon": 1e-8},
    },
    errors=[
        ({"beta1": 1.0}, ValueError, "beta1"),
        ({"beta2": 2.0}, ValueError, "beta2"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
