from cases import OptCase

CASE = OptCase(
    name="adamw",
    configs={
        "default": {},
        "wd": {"wd": 0.1, "learning_rate": 0.01},
        "no_bias_correction": {"correct_bias": False, "wd": 0.03, "beta1": 0.5, "beta2": 0.8},
        "clip+rescale": {"clip_gradient": 0.4, "rescale_grad": 0.8, "wd": 0.05},
        "agg1": {"aggregate_num": 1, "epsilon": 1e-8},
    },
    errors=[
        ({"beta1": 1.0}, ValueError, "beta1"),
        ({"beta2": -0.5}, ValueError, "beta2"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": float("inf")}, ValueError, "epsilon"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"aggregate_num": -1}, ValueError, "aggregate_num"),
    ],
)
