"""The README's example must run as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    import importlib.util
    has_torch = importlib.util.find_spec("torch") is not None
    for block in blocks:
        if "import torch" in block and not has_torch:
            continue          # the PyTorch example needs the torch extra
        exec(compile(block, str(README), "exec"), {})


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    command = re.search(r"## Tests\n\n```bash\n(.*?)\n```", README.read_text(), flags=re.S).group(1)
    assert command.strip() in ci
