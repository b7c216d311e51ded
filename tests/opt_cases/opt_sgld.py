from cases import OptCase

# The update adds Gaussian noise from mxopt_numba.random: the generic tests reseed it
# before each run, and step and fused_step draw the same numbers in the same order.
CASE = OptCase(
    name="sgld",
    configs={
        "default": {},
        "wd+clip": {"wd": 0.05, "clip_gradient": 0.3},
        "rescale+lr": {"rescale_grad": 0.25, "learning_rate": 0.02, "wd": 0.01},
    },
    errors=[
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"momentum": 0.9}, TypeError, "momentum"),
    ],
    stochastic=True,
)
