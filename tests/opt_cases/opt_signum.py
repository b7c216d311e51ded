from cases import OptCase

# Sign-based rules are discontinuous: a float64 reference would flip signs that float32
# rounds the other way, so the kernels are compared with the float32 step.
CASE = OptCase(
    name="signum",
    configs={
        "default": {},
        "wd+wd_lh+clip": {"momentum": 0.5, "wd": 0.05, "wd_lh": 0.2, "clip_gradient": 0.3,
                          "learning_rate": 0.05},
        "rescale": {"rescale_grad": 0.25, "wd": 0.01},
        "signsgd": {"momentum": 0.0, "wd": 0.03, "wd_lh": 0.1, "learning_rate": 0.05},
        "signsgd-negative-rescale": {"momentum": 0.0, "rescale_grad": -2.0, "clip_gradient": 0.1},
    },
    errors=[
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"wd_lh": "none"}, TypeError, "wd_lh"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
    ],
    reference_float32=True,
)
