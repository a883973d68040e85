"""The set-up leaves a venv in which nnU-Net's stock trainer search can import torchvision,
and the work-around (autopet_common/compat/torchvision_ops_hook.py) costs nothing to other programs."""
import subprocess
import sys
from pathlib import Path

COMPAT = Path(__file__).resolve().parents[1] / "autopet_common" / "compat"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_torchvision_imports_in_a_fresh_interpreter():
    # nnUNetv2_train -tr <external trainer> imports timm -> torchvision before nnUNet_extTrainer
    result = _run("import torchvision, timm; print('ok')")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_hook_is_lazy_and_idempotent():
    result = _run("import sys, numpy; print('torch' in sys.modules)")
    assert result.returncode == 0 and result.stdout.strip() == "False"

    sys.path.insert(0, str(COMPAT))
    try:
        import torchvision_ops_hook as hook
    finally:
        sys.path.pop(0)

    def hooks():
        return [f for f in sys.meta_path if type(f).__name__ == "_TorchvisionImportFinder"]

    was_installed = bool(hooks())
    try:
        hook.install()
        hook.install()
        assert len(hooks()) == 1
        hook.uninstall()
        assert not hooks()
    finally:
        if was_installed:  # leave this process as the .pth left it
            hook.install()
