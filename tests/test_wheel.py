"""The built wheel is the whole plugin: installed into a fresh environment (no checkout on its
path), it runs MF and CoLLM from a folder outside the checkout with its own packaged defaults."""
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def run(command, cwd, **kwargs):
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, **kwargs)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    return out


@pytest.mark.slow
def test_wheel_installs_and_runs_mf_and_collm_outside_the_checkout(tmp_path, smollm2_dir):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], cwd=tmp_path)
    wheel = next(wheels.glob("recbole_collm-*.whl"))
    # a fresh environment that sees this interpreter's installed dependencies (a .pth line: inside
    # a virtual environment --system-site-packages would show the base interpreter's instead) but
    # installs the plugin itself
    venv = tmp_path / "env"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    where = run([str(python), "-c", "import recbole_collm, os; print(recbole_collm.__file__)"], cwd=work).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout's
    packaged = run([str(python), "-c", "from recbole_collm.config import PROPERTIES_DIR as p; "
                    "print(sorted(f.name for f in p.rglob('*.yaml')))"], cwd=work).stdout
    assert "CoLLM.yaml" in packaged and "gpu.yaml" in packaged and "global_time.yaml" in packaged

    cli = str(venv / "bin" / "recbole-collm")
    mf = run([cli, "--model=MF", "--dataset=ml-100k", "--epochs=1", "--state=INFO", "--checkpoint_dir=saved"], cwd=work)
    assert "test result" in mf.stdout + mf.stderr
    checkpoint = next((work / "saved").glob("MF-*.pth"))
    collm = run([cli, "--model=CoLLM", "--dataset=ml-100k", f"--cf_checkpoint={checkpoint}", "--train_rows_limit=16",
                 "--lora_train_rows=8", "--eval_rows_limit=16", "--cie_epochs=1", "--show_progress=False",
                 "--state=INFO", "--checkpoint_dir=saved"], cwd=work)
    log = collm.stdout + collm.stderr
    # the packaged CoLLM.yaml was read (its prompt and budgets), and both stages ran
    assert "prefix_store_mb = 4096" in log and "Stage 2 of 2: cie" in log and "test result" in log
