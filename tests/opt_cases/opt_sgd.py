from cases import OptCase

CASE = OptCase(
    name="sgd",
    configs={
        "default": {},
        "momentum": {"momentum": 0.9},
        "wd+clip": {"momentum": 0.9, "wd": 0.05, "clip_gradient": 0.3},
        "rescale": {"rescale_grad": 0.25, "learning_rate": 0.5, "wd": 0.01},
    },
    errors=[
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"learning_rate": "fast"}, TypeError, "learning_rate"),
        ({"aggregate_num": -2}, ValueError, "aggregate_num"),
        ({"aggregate_num": 2.5}, ValueError, "aggregate_num"),
        ({"nesterov": True}, TypeError, "nesterov"),
        ({"param_idx2name": [1, 2]}, TypeError, "param_idx2name"),
    ],
)
