"""Write the sample model in the other formats: shapes_cnn.pt2 (torch.export) and shapes_cnn.onnx.

TorchScript cannot be traced by torch.export, so the nn.Module is rebuilt from
train_shapes.ShapesCNN and given the TorchScript archive's weights; labels and preprocessing
are carried over from its embedded explain_cli.json.

    python sample_models/export_shapes.py
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from explain_cli.models import load_model  # noqa: E402
from explain_cli.models.export import export_model  # noqa: E402
from train_shapes import SIZE, ShapesCNN  # noqa: E402


def main() -> None:
    scripted = load_model(str(HERE / "shapes_cnn.pt"), device="cpu")
    module = ShapesCNN()
    module.load_state_dict(scripted.module.state_dict())
    module.eval()
    rebuilt = dataclasses.replace(scripted, module=module)
    for suffix in (".pt2", ".onnx"):
        out = export_model(rebuilt, HERE / f"shapes_cnn{suffix}", example_shape=(3, SIZE, SIZE))
        print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
