"""Without the serve or faiss extra, the commands that need them say so in one line."""

import subprocess
import sys

import pytest

MAIN = "import sys; sys.modules[{mod!r}] = None; sys.argv = ['cliper', *sys.argv[1:]]; from cliper.cli.main import main; main()"


@pytest.mark.parametrize("mod", ["uvicorn", "fastapi", "prometheus_client"])
def test_serve_without_the_serve_extra_is_one_line(tmp_path, mod):
    res = subprocess.run([sys.executable, "-c", MAIN.format(mod=mod), "serve", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    lines = [x for x in res.stderr.splitlines() if x.strip() and not x.startswith(("INFO:", "WARNING:"))]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cliper[serve]" in lines[0], res.stderr


def test_a_faiss_index_without_faiss_is_one_clear_error(monkeypatch, tmp_path):
    from cliper.errors import CliperError
    from cliper.serving.index import FaissIndex

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(CliperError, match=r"cliper\[faiss\]"):
        FaissIndex.read(tmp_path / "index.faiss", {"kind": "ivf"}, 10)
