"""What this machine has: GPUs or CPU cores, memory, bf16 support, library versions.

Also the automatic device and dtype choice every model load uses: CUDA in bf16 (fp16 on GPUs
without bf16); on CPU bf16 where the CPU has native bf16 instructions, else fp32.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from workbench.errors import InvalidInput

LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "datasets",
    "streamlit",
    "gradio",
    "triton",
    "lmdeploy",
    "gguf",
)
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_total_gb: float
    memory_free_gb: float
    capability: str
    bf16: bool


@dataclass
class HardwareInfo:
    cpu_model: str
    cpu_cores: int
    ram_total_gb: float
    ram_available_gb: float
    cpu_bf16: bool
    gpus: list[GpuInfo] = field(default_factory=list)
    cuda_version: str = ""
    python: str = ""
    platform: str = ""
    libraries: dict[str, str] = field(default_factory=dict)

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def summary(self) -> str:
        """One line for a sidebar or a log: the accelerator and its memory."""
        if self.gpus:
            g = self.gpus[0]
            more = f" (+{len(self.gpus) - 1} more)" if len(self.gpus) > 1 else ""
            return f"{g.name}, {g.memory_total_gb:.0f} GB{more}"
        bf16 = ", bf16" if self.cpu_bf16 else ""
        return f"CPU: {self.cpu_cores} cores, {self.ram_total_gb:.0f} GB RAM{bf16} (no GPU)"

    def to_dict(self) -> dict:
        return {**asdict(self), "has_gpu": self.has_gpu, "summary": self.summary()}


def _cpu_flags_and_model() -> tuple[set[str], str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set(), platform.processor() or platform.machine()
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    return flags, model or platform.machine()


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX-512 BF16 or AMX)."""
    flags, _ = _cpu_flags_and_model()
    return any(f in flags for f in CPU_BF16_FLAGS)


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


def detect_hardware() -> HardwareInfo:
    """Read the machine. Imports torch (about a second the first time)."""
    import torch

    _, model = _cpu_flags_and_model()
    memory = psutil.virtual_memory()
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            gpus.append(
                GpuInfo(
                    index=i,
                    name=props.name,
                    memory_total_gb=round(total / 2**30, 1),
                    memory_free_gb=round(free / 2**30, 1),
                    capability=f"{props.major}.{props.minor}",
                    bf16=props.major >= 8,
                )
            )
    return HardwareInfo(
        cpu_model=model,
        cpu_cores=os.cpu_count() or 1,
        ram_total_gb=round(memory.total / 2**30, 1),
        ram_available_gb=round(memory.available / 2**30, 1),
        cpu_bf16=cpu_supports_bf16(),
        gpus=gpus,
        cuda_version=torch.version.cuda or "",
        python=platform.python_version(),
        platform=platform.platform(terse=True),
        libraries=_library_versions(),
    )


def _nvidia_device_present() -> bool:
    return any(
        Path(p).exists()
        for p in ("/dev/nvidia0", "/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg")
    )


def resolve_device(device: str = "auto") -> str:
    """'auto' becomes 'cuda' when a GPU is usable, else 'cpu'. Checks explicit choices."""
    if device == "auto" and not _nvidia_device_present():
        return "cpu"  # skips importing torch (seconds) where there cannot be a CUDA GPU
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(
            f"Device {device!r} was asked for, but no CUDA GPU is usable here.",
            where="device",
            fix="Use device 'auto' or 'cpu', or install the CUDA build of torch on a GPU machine.",
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise InvalidInput(
            f"Unknown device {device!r}.", where="device", fix="Use 'auto', 'cpu' or 'cuda'."
        )
    return device


def resolve_dtype(dtype: str = "auto", device: str = "cpu") -> str:
    """'auto' becomes bfloat16 on CUDA GPUs that have it (float16 on older ones), bfloat16 on
    CPUs with native bf16, else float32. Returns the dtype's name."""
    if dtype != "auto":
        if dtype not in ("float32", "bfloat16", "float16"):
            raise InvalidInput(
                f"Unknown dtype {dtype!r}.",
                where="dtype",
                fix="Use 'auto', 'float32', 'bfloat16' or 'float16'.",
            )
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_supports_bf16() else "float32"
