from cases import OptCase

CASE = OptCase(
    name="groupadagrad",
    configs={
        "default": {},
        "lr": {"learning_rate": 0.1},
        "clip+rescale": {"clip_gradient": 0.4, "rescale_grad": 0.7},
        "epsilon": {"epsilon": 1e-3, "learning_rate": 0.05},
    },
    # 2-D weights only; (181, 201) has rows straddling kernel blocks, (2, 40001) rows
    # longer than a block (kernels/_launch.BLOCK is 32768 elements)
    shapes=((3, 5), (181, 201), (2, 40001), (1, 1)),
    errors=[
        ({"wd": 0.01}, ValueError, "wd"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": -1.0}, ValueError, "epsilon"),
        ({"learning_rate": -0.01}, ValueError, "learning_rate"),
    ],
)
