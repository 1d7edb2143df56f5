"""`vtrial data download` against a PhysioNet-like server on loopback (127.0.0.1), with range requests,
a broken transfer and a resumed partial file."""

import http.server
import re
import threading

import numpy as np
import pytest
import wfdb
from typer.testing import CliRunner

from vtrial.cli import app
from vtrial.sources.physionet import check_signal_file
from vtrial.spec.paths import RefusedName

DB, VERSION = "ecgrdvq", "1.0.0"


class PhysioNetLike(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (path → bytes) under /files/DB/VERSION/, a /content/DB/ page naming the version,
    and honours ``Range: bytes=a-`` / ``a-b``. Paths in ``broken`` are cut off mid-transfer."""

    files: dict = {}
    broken: set = set()
    log: list = []

    def log_message(self, *args):
        pass

    def _body(self):
        path = self.path.split("?")[0]
        if path.rstrip("/") == f"/content/{DB}":
            return f"<html><p>Version: {VERSION}</p></html>".encode()
        if path.startswith(f"/content/{DB}/{VERSION}"):
            return b"<html>ok</html>"
        prefix = f"/files/{DB}/{VERSION}/"
        return self.files.get(path[len(prefix) :]) if path.startswith(prefix) else None

    def _send(self, head_only):
        body = self._body()
        rng = self.headers.get("Range")
        self.log.append((self.command, self.path, rng))
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, len(body) - 1
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)), end) if m.group(2) else end
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start : end + 1]
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if head_only:
            return
        if self.path.split("/")[-1] in self.broken and not m:
            self.wfile.write(chunk[: len(chunk) // 3])  # then hang up: a broken transfer
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)

    def do_GET(self):
        self._send(False)

    def do_HEAD(self):
        self._send(True)


@pytest.fixture()
def server(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    files = {"RECORDS": b"1001/rec1\n1002/rec2\n", "SCR-002.Clinical.Data.csv": b"RANDID,SEX\n1001,F\n"}
    for sub, name in (("1001", "rec1"), ("1002", "rec2")):
        sig = np.cumsum(rng.standard_normal((4000, 2)), axis=0) * 0.01
        wfdb.wrsamp(
            name, fs=500, units=["mV", "mV"], sig_name=["II", "V2"], p_signal=sig, fmt=["16", "16"], write_dir=str(src)
        )
        for ext in ("hea", "dat"):
            files[f"{sub}/{name}.{ext}"] = (src / f"{name}.{ext}").read_bytes()
    handler = type("Handler", (PhysioNetLike,), {"files": files, "broken": set(), "log": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def download(url, dest, *extra):
    return CliRunner().invoke(app, ["data", "download", DB, "--dest", str(dest), "--base-url", url, *extra])


def test_download_fetches_every_record_and_the_clinical_table(server, tmp_path):
    url, handler = server
    res = download(url, tmp_path / "dl")
    assert res.exit_code == 0, res.output
    assert "2 records and 1 tables" in res.output
    for sub, name in (("1001", "rec1"), ("1002", "rec2")):
        for ext in ("hea", "dat"):
            assert (tmp_path / "dl" / sub / f"{name}.{ext}").read_bytes() == handler.files[f"{sub}/{name}.{ext}"]
    assert (tmp_path / "dl" / "SCR-002.Clinical.Data.csv").read_bytes() == handler.files["SCR-002.Clinical.Data.csv"]
    rec = wfdb.rdrecord(str(tmp_path / "dl" / "1001" / "rec1"))
    assert rec.sig_name == ["II", "V2"] and rec.p_signal.shape == (4000, 2)
    assert all(host_path.startswith("/") for _, host_path, _ in handler.log)  # only this loopback server was asked


def test_a_broken_transfer_fails_clearly_and_a_partial_file_resumes(server, tmp_path):
    url, handler = server
    handler.broken.add("rec2.dat")
    res = download(url, tmp_path / "dl", "--retries", "2")
    assert res.exit_code == 1
    assert "failed" in res.output and "1002/rec2" in res.output and "run the same command again" in res.output
    assert (tmp_path / "dl" / "1001" / "rec1.dat").read_bytes() == handler.files["1001/rec1.dat"]  # kept

    # an interrupted earlier download left the first part of the file: the next run asks for the rest only
    full = handler.files["1002/rec2.dat"]
    (tmp_path / "dl" / "1002").mkdir(exist_ok=True)
    (tmp_path / "dl" / "1002" / "rec2.dat").write_bytes(full[:5000])
    handler.broken.clear()
    handler.log.clear()
    res = download(url, tmp_path / "dl")
    assert res.exit_code == 0, res.output
    got = (tmp_path / "dl" / "1002" / "rec2.dat").read_bytes()
    assert got == full
    ranged = [r for m, p, r in handler.log if p.endswith("rec2.dat") and m == "GET" and r]
    assert ranged == ["bytes=5000-"]  # once: a file holding two signals is not continued twice
    full_gets = [p for m, p, r in handler.log if p.endswith(".dat") and m == "GET" and not r]
    assert full_gets == []  # complete files are not fetched again


def test_unknown_database_and_unreachable_mirror(tmp_path):
    res = CliRunner().invoke(app, ["data", "download", "nosuchdb", "--dest", str(tmp_path)])
    assert res.exit_code == 2 and "unknown database 'nosuchdb'" in res.output
    res = download("http://127.0.0.1:9", tmp_path / "x")
    assert res.exit_code == 1 and "cannot reach http://127.0.0.1:9/content/ecgrdvq/" in res.output


def test_names_from_a_hostile_mirror_are_refused_and_nothing_lands_outside_dest(server, tmp_path):
    """RECORDS entries and header file names that climb out of --dest, hide or point elsewhere are refused,
    named, and never written; the honest records still download."""
    url, handler = server
    evil_header = b"evil 1 500 4000\nauthorized_keys 16 200 16 0 0 0 0 II\n"
    handler.files.update(
        {
            "RECORDS": b"1001/rec1\n../../../../outside/x\n1002/.bashrc\n/etc/cron.d/x\n1003/evil\n1004/rec4\n",
            "1003/evil.hea": evil_header,
            "1004/rec4.hea": handler.files["1002/rec2.hea"]
            .replace(b"rec2", b"rec4")
            .replace(b"rec4.dat", b"../../x.dat"),
            "../../../../outside/x.hea": b"x 1 500 10\nx.dat 16 200 16 0 0 0 0 II\n",
        }
    )
    dest = tmp_path / "box" / "dl"
    before = {p for p in tmp_path.rglob("*")}
    res = download(url, dest)
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    for rec, why in (
        ("../../../../outside/x", "'..'"),
        ("1002/.bashrc", "hidden"),
        ("/etc/cron.d/x", "absolute"),
        ("1003/evil", "'authorized_keys'"),
    ):
        assert f"refused {rec}:" in text and why in text.split(f"refused {rec}:")[1][:200], (rec, text)
    written = {p for p in tmp_path.rglob("*")} - before
    assert all(p == dest or dest in p.parents or p in dest.parents for p in written), sorted(map(str, written))
    assert sorted(p.name for p in written if p.is_file()) == ["SCR-002.Clinical.Data.csv", "rec1.dat", "rec1.hea"]
    assert "1 records" in text  # only the honest one
    assert "failed 1004/rec4: unreadable header" in text  # a header wfdb cannot parse fails that record alone


def test_a_signal_file_is_the_records_own():
    assert check_signal_file("100.dat", "100") == "100.dat"
    for bad in ("other.dat", "100.sh", "sub/100.dat", "100"):
        with pytest.raises(RefusedName):
            check_signal_file(bad, "100")
