"""How much memory does writing a trained diffusers model take? A UNet loaded in fp32 (as a full
fine-tune holds it) is written as fp16 the way the export writes it (tensor by tensor,
``models/full_export.write_safetensors``) and, for comparison, with safetensors' ``save_file`` of the
converted state (a second, fp16 copy of the whole model); each in its own process, peak RSS above
the loaded model.

    python benchmarks/export_peak.py --model /work/fullsize/sdxl-fp16 [--subfolder unet]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))


def child(model: str, subfolder: str, way: str) -> None:
    sys.path.insert(0, str(ROOT))
    import torch
    from diffusers import UNet2DConditionModel

    from dreamtune.models.full_export import write_safetensors

    unet = UNet2DConditionModel.from_pretrained(model, subfolder=subfolder, torch_dtype=torch.float32)
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from what is held now
    loaded = _status_kib("VmRSS")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        if way == "streamed":
            write_safetensors(unet.state_dict(), path, torch.float16, {"format": "pt"})
        else:
            from safetensors.torch import save_file

            save_file({k: v.to(torch.float16).contiguous() for k, v in unet.state_dict().items()}, str(path))
        size = path.stat().st_size
    peak = _status_kib("VmHWM")
    print(json.dumps({"way": way, "loaded_gib": loaded / 2**20, "peak_gib": peak / 2**20, "file_gib": size / 2**30}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--subfolder", default="unet")
    parser.add_argument("--child", choices=["streamed", "save_file"])
    args = parser.parse_args()
    if args.child:
        child(args.model, args.subfolder, args.child)
        return
    print(
        "| way | model loaded (fp32) GiB | peak while writing GiB | above the model GiB | file GiB |\n|---|---|---|---|---|"
    )
    for way in ("save_file", "streamed"):
        out = subprocess.run(
            [sys.executable, __file__, "--model", args.model, "--subfolder", args.subfolder, "--child", way],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"| {way} | {r['loaded_gib']:.2f} | {r['peak_gib']:.2f} | {r['peak_gib'] - r['loaded_gib']:.2f} | {r['file_gib']:.2f} |"
        )


if __name__ == "__main__":
    main()
