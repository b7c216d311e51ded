from cases import OptCase

CASE = OptCase(
    name="lbsgd",
    configs={
        "default": {},
        "momentum": {"momentum": 0.9, "wd": 0.01},
        "wd+clip": {"momentum": 0.9, "wd": 0.05, "clip_gradient": 0.3, "rescale_grad": 2.0},
        "batch_scale2_linear": {"momentum": 0.9, "batch_scale": 2, "warmup_epochs": 1,
                                "updates_per_epoch": 4},
        "batch_scale3_power2": {"batch_scale": 3, "warmup_strategy": "power2", "warmup_epochs": 2,
                                "updates_per_epoch": 2, "begin_epoch": 1, "wd": 0.01},
        "batch_scale2_sqrt": {"momentum": 0.5, "batch_scale": 2, "warmup_strategy": "sqrt",
                              "warmup_epochs": 1, "updates_per_epoch": 3},
        "lars": {"warmup_strategy": "lars", "wd": 0.01, "learning_rate": 0.1},
        "batch_scale2_lars": {"momentum": 0.9, "batch_scale": 2, "warmup_strategy": "lars",
                              "wd": 0.01},
    },
    errors=[
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"batch_scale": 0}, ValueError, "batch_scale"),
        ({"batch_scale": 1.5}, TypeError, "batch_scale"),
        ({"updates_per_epoch": -1}, ValueError, "updates_per_epoch"),
        ({"begin_epoch": "one"}, TypeError, "begin_epoch"),
        ({"warmup_epochs": -1}, ValueError, "warmup_epochs"),
        ({"warmup_strategy": 3}, TypeError, "warmup_strategy"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
)
