"""The interactive viewer (issue 29): incremental prediction equals a full one, the HTTP API on a
real uvicorn server, bad requests, a person's clicks replayed through the local challenge, and
the page in a real browser (Debian's chromium, driven by Selenium through chromedriver)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
COHORT = REPO / "test" / "sample_cohort"
MODEL = REPO / "models" / "task1_phantom_organs"
CASE = "PHANTOM_FDG_0000"
ARTIFACTS = Path(os.environ.get("AUTOPET_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))


def _sample(case: str = CASE):
    from autopet_common.image_io import read_image

    ct, geometry = read_image(COHORT / "imagesTr" / f"{case}_0000.nii.gz", dtype=np.float32)
    pet, _ = read_image(COHORT / "imagesTr" / f"{case}_0001.nii.gz", dtype=np.float32)
    label, _ = read_image(COHORT / "labelsTr" / f"{case}.nii.gz")
    return ct, pet, (label > 0).astype(np.uint8), geometry


def _simulated(case: str = CASE):
    from clicks.simulate import simulate_clicks

    _, pet, label, _ = _sample(case)
    return simulate_clicks(label, pet)


# ----------------------------------------------------------------------------- pure parts
def test_linear_resize_box_equals_skimage_resize():
    from skimage.transform import resize

    from Task1.incremental import linear_resize_box

    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 17, 23, 11))
    out_shape = (40, 31, 26)
    full = np.stack([resize(c, out_shape, order=1, mode="edge", anti_aliasing=False) for c in data])
    box = (slice(5, 19), slice(0, 31), slice(20, 26))
    np.testing.assert_allclose(linear_resize_box(data, out_shape, box), full[(slice(None), *box)], atol=1e-12)


@pytest.mark.parametrize("case", ["PHANTOM_FDG_0000", "PHANTOM_PSMA_0001"])
def test_click_session_equals_full_prediction(case):
    """One click at a time, incremental, gives the mask of a full prediction with the same clicks;
    undo and reset give back the masks before."""
    from Task1.interactive import ClickSession
    from Task1.session import open_method

    ct, pet, label, geometry = _sample(case)
    clicks = _simulated(case)
    session = ClickSession(open_method(MODEL, device="cpu", incremental=True), ct, pet, geometry, name=case,
                           label=label)
    full = open_method(MODEL, device="cpu")
    prepared = full.prepare(ct, pet, geometry)
    step0 = session.start()
    first = session.mask.copy()
    assert step0.tiles_run == step0.tiles > 0
    run = []
    for n in range(3):
        for kind in ("tumor", "background"):
            answer = session.click(kind, clicks[kind][n])
            run.append(answer.tiles_run)
            expected, _ = full.predict(prepared, session.clicks)
            np.testing.assert_array_equal(session.mask, expected)
    assert min(run) < step0.tiles, f"every click recomputed every tile: {run}"
    before_last = full.predict(prepared, {"tumor": clicks["tumor"][:3], "background": clicks["background"][:2]})[0]
    session.undo()
    np.testing.assert_array_equal(session.mask, before_last)
    session.reset()
    np.testing.assert_array_equal(session.mask, first)
    assert session.clicks == {"tumor": [], "background": []}
    replayed = session.replay(10)
    assert replayed.dice is not None and replayed.dice > 0.7


def test_click_session_refuses_bad_points():
    from autopet_common.errors import InputError
    from Task1.interactive import ClickSession
    from Task1.session import open_method

    ct, pet, _, geometry = _sample()
    session = ClickSession(open_method("model-free"), ct, pet, geometry)
    session.start()
    for kind, point, message in (("tumor", [64, 0, 0], "outside the image"), ("lesion", [1, 1, 1], "kind"),
                                 ("tumor", [1, 2], "voxel index"), ("tumor", ["a", 1, 1], "numbers")):
        with pytest.raises(InputError, match=message):
            session.click(kind, point)
    with pytest.raises(InputError, match="nothing to undo"):
        session.undo()
    with pytest.raises(InputError, match="no label"):
        session.replay(1)
    assert session.clicks == {"tumor": [], "background": []}


def test_session_store_expires_idle_sessions_and_caps_their_number():
    from viewer.sessions import SessionError, SessionStore

    now = [0.0]
    store = SessionStore(max_sessions=2, idle_seconds=60, clock=lambda: now[0])
    first = store.add("a", object(), False)
    store.add("b", object(), False)
    with pytest.raises(SessionError) as refused:
        store.reserve()
    assert refused.value.status == 429
    now[0] = 50.0
    assert store.get(first.id).case_name == "a"   # used: its idle time starts again
    now[0] = 100.0
    assert len(store) == 2 and store.expire() != [] and len(store) == 1  # "b" idle 100 s > 60 s
    store.reserve()
    now[0] = 200.0
    with pytest.raises(SessionError) as gone:
        store.get(first.id)
    assert gone.value.status == 404 and "expired" in str(gone.value)


# ----------------------------------------------------------------------------- a real server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra: str):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = ARTIFACTS / f"viewer_server_{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "viewer", "--model", str(MODEL), "--cohort", str(COHORT), "--device", "cpu",
                   "--port", str(self.port), *extra]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"viewer exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                self.request("GET", "/api/health", token=extra[extra.index("--token") + 1] if "--token" in extra else None)
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        raise RuntimeError("viewer did not start within 120 s")

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None, headers=None, token=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=300) as response:
            payload = response.read()
            kind = response.headers.get("content-type", "")
            return response.status, (json.loads(payload) if "json" in kind else payload)

    def error(self, method: str, path: str, body=None, **kwargs) -> tuple[int, str]:
        with pytest.raises(urllib.error.HTTPError) as caught:
            self.request(method, path, body, **kwargs)
        return caught.value.code, json.loads(caught.value.read())["detail"]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server():
    running = Server("--max_sessions", "2", "--max_upload_mb", "2")
    yield running
    running.stop()


def _mask(server: Server, sid: str) -> np.ndarray:
    from autopet_common.image_io import read_image

    _, payload = server.request("GET", f"/api/sessions/{sid}/mask")
    path = ARTIFACTS / f"mask_{uuid.uuid4().hex}.nii.gz"
    path.write_bytes(payload)
    try:
        return read_image(path)[0]
    finally:
        path.unlink()


def _open(server: Server, case: str = CASE) -> dict:
    status, opened = server.request("POST", "/api/sessions", {"case": case})
    assert status == 200
    return opened


def test_api_click_undo_reset_and_clicks_json(server):
    _, listed = server.request("GET", "/api/cases")
    assert [c["name"] for c in listed["cases"]] == ["PHANTOM_FDG_0000", "PHANTOM_PSMA_0001"]
    opened = _open(server)
    sid = opened["session"]
    try:
        assert opened["shape"] == [64, 64, 48] and opened["spacing"] == [5.0, 5.0, 8.0]
        step0 = _mask(server, sid)
        assert int(step0.sum()) == opened["first_answer"]["voxels"]
        lesion = _simulated()["tumor"][0]
        _, answer = server.request("POST", f"/api/sessions/{sid}/clicks", {"kind": "tumor", "point": lesion})
        assert answer["clicks"]["tumor"] == [lesion] and answer["seconds"] > 0
        mask = _mask(server, sid)
        assert mask[tuple(lesion)] == 1 and int(mask.sum()) == answer["voxels"]
        _, answer = server.request("POST", f"/api/sessions/{sid}/clicks", {"kind": "background", "point": [2, 2, 2]})
        _, clicks = server.request("GET", f"/api/sessions/{sid}/clicks")
        assert clicks["type"] == "Multiple points"
        assert [(p["name"], p["point"]) for p in clicks["points"]] == [("tumor", lesion), ("background", [2, 2, 2])]
        _, undone = server.request("POST", f"/api/sessions/{sid}/undo")
        np.testing.assert_array_equal(_mask(server, sid), mask)
        assert undone["clicks"] == {"tumor": [lesion], "background": []}
        server.request("POST", f"/api/sessions/{sid}/reset")
        np.testing.assert_array_equal(_mask(server, sid), step0)
        _, replayed = server.request("POST", f"/api/sessions/{sid}/replay", {"step": 10})
        assert replayed["dice"] > 0.7 and len(replayed["clicks"]["tumor"]) == 10
        _, png = server.request("GET", f"/api/sessions/{sid}/mip.png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        _, volume = server.request("GET", f"/api/sessions/{sid}/volume/pet")
        assert len(volume) > 64 * 64 * 48 * 4
    finally:
        server.request("DELETE", f"/api/sessions/{sid}")


def test_api_bad_requests_get_4xx_and_harm_no_other_session(server):
    first = _open(server)["session"]
    try:
        lesion = _simulated()["tumor"][0]
        server.request("POST", f"/api/sessions/{first}/clicks", {"kind": "tumor", "point": lesion})
        before = _mask(server, first)
        bad = [
            (("POST", f"/api/sessions/{first}/clicks", {"kind": "tumor", "point": [64, 10, 10]}), 400, "outside the image"),
            (("POST", f"/api/sessions/{first}/clicks", {"kind": "lesion", "point": [1, 1, 1]}), 400, "kind"),
            (("POST", f"/api/sessions/{first}/clicks", {"point": [1, 1, 1]}), 400, "expected"),
            (("POST", "/api/sessions", {"case": "NO_SUCH_CASE"}), 404, "unknown case"),
            (("POST", "/api/sessions/not-a-session/clicks", {"kind": "tumor", "point": [1, 1, 1]}), 404,
             "unknown session"),
            (("GET", "/api/sessions/not-a-session/mask"), 404, "unknown session"),
            (("POST", f"/api/sessions/{first}/replay", {"step": 11}), 400, "step"),
        ]
        for args, status, message in bad:
            code, detail = server.error(*args)
            assert code == status and message in detail, (args, code, detail)
        code, detail = server.error("POST", f"/api/sessions/{first}/clicks", raw=b"{not json",
                                    headers={"Content-Type": "application/json"})
        assert code == 422 and "JSON" in detail
        boundary = "xyz"
        corrupt = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"ct\"; filename=\"ct.nii.gz\"\r\n\r\n"
                   "not an image\r\n"
                   f"--{boundary}\r\nContent-Disposition: form-data; name=\"pet\"; filename=\"pet.nii.gz\"\r\n\r\n"
                   f"not an image either\r\n--{boundary}--\r\n").encode()
        form = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        code, detail = server.error("POST", "/api/sessions/upload", raw=corrupt, headers=form)
        assert code == 400 and "uploaded CT" in detail
        # a 3 MB upload (limit 2 MB) is refused on its declared size, before the body is read
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.putrequest("POST", "/api/sessions/upload")
        connection.putheader("Content-Type", form["Content-Type"])
        connection.putheader("Content-Length", str(3 * 1024 ** 2))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413 and "limit" in json.loads(response.read())["detail"]
        connection.close()
        second = _open(server)["session"]
        code, detail = server.error("POST", "/api/sessions", {"case": CASE})
        assert code == 429 and "maximum" in detail
        server.request("DELETE", f"/api/sessions/{second}")
        # the first session is as it was and still answers
        np.testing.assert_array_equal(_mask(server, first), before)
        _, state = server.request("GET", f"/api/sessions/{first}")
        assert state["clicks"] == {"tumor": [lesion], "background": []}
        _, answer = server.request("POST", f"/api/sessions/{first}/undo")
        assert answer["clicks"] == {"tumor": [], "background": []}
    finally:
        server.request("DELETE", f"/api/sessions/{first}")


def test_two_sessions_clicking_at_once_get_their_own_answers(server):
    """One model, predictions serialised: clicks sent at the same time to two sessions (two cases)
    are each answered with their own case's mask."""
    import threading

    cases = {"PHANTOM_FDG_0000": _simulated("PHANTOM_FDG_0000")["tumor"][0],
             "PHANTOM_PSMA_0001": _simulated("PHANTOM_PSMA_0001")["tumor"][0]}
    sessions = {case: _open(server, case)["session"] for case in cases}
    answers = {}
    try:
        def click(case):
            answers[case] = server.request("POST", f"/api/sessions/{sessions[case]}/clicks",
                                           {"kind": "tumor", "point": cases[case]})[1]

        threads = [threading.Thread(target=click, args=(case,)) for case in cases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for case, point in cases.items():
            assert answers[case]["clicks"]["tumor"] == [point]
            assert _mask(server, sessions[case])[tuple(point)] == 1
    finally:
        for sid in sessions.values():
            server.request("DELETE", f"/api/sessions/{sid}")


def test_api_upload_opens_a_session(server):
    boundary = "b0undary"
    parts = b""
    for field, name in (("ct", f"{CASE}_0000.nii.gz"), ("pet", f"{CASE}_0001.nii.gz")):
        parts += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                  "Content-Type: application/gzip\r\n\r\n").encode() + (COHORT / "imagesTr" / name).read_bytes() + b"\r\n"
    parts += f"--{boundary}--\r\n".encode()
    _, opened = server.request("POST", "/api/sessions/upload", raw=parts,
                               headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        assert opened["shape"] == [64, 64, 48] and opened["has_label"] is False
        assert opened["case"].startswith("upload:")
    finally:
        server.request("DELETE", f"/api/sessions/{opened['session']}")


def test_token_is_required_beyond_loopback_and_enforced(tmp_path):
    refused = subprocess.run([sys.executable, "-m", "viewer", "--cohort", str(COHORT), "--model", "model-free",
                              "--host", "0.0.0.0"], cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "AUTOPET_VIEWER_TOKEN": ""})
    assert refused.returncode == 2 and "token" in refused.stderr
    guarded = Server("--token", "s3cret")
    try:
        code, detail = guarded.error("GET", "/api/cases")
        assert code == 401 and "token" in detail
        status, listed = guarded.request("GET", "/api/cases", token="s3cret")
        assert status == 200 and listed["cases"]
        status, _ = guarded.request("GET", "/api/cases?token=s3cret")
        assert status == 200
    finally:
        guarded.stop()


def test_person_clicks_replay_through_local_challenge(server, tmp_path):
    """Clicks given in the viewer, saved as JSON, run through the local challenge: the same mask."""
    from autopet_common.image_io import read_image
    from local_challenge.runner import run_local_challenge

    simulated = _simulated()
    sid = _open(server)["session"]
    try:
        given = [("tumor", simulated["tumor"][0]), ("tumor", simulated["tumor"][1]),
                 ("background", simulated["background"][0]), ("tumor", [30, 34, 20])]
        for kind, point in given:
            server.request("POST", f"/api/sessions/{sid}/clicks", {"kind": kind, "point": point})
        viewer_mask = _mask(server, sid)
        _, clicks = server.request("GET", f"/api/sessions/{sid}/clicks")
    finally:
        server.request("DELETE", f"/api/sessions/{sid}")
    clicks_dir = tmp_path / "clicks"
    clicks_dir.mkdir()
    (clicks_dir / f"{CASE}.json").write_text(json.dumps(clicks))
    result = run_local_challenge(COHORT, tmp_path / "run", model=str(MODEL), in_process=True, clicks_dir=clicks_dir,
                                 max_cases=1, n_steps=4, progress=False, overlays=False)
    assert all(r.exit_code == 0 for r in result.runs)
    last = next((tmp_path / "run" / "predictions").glob(f"{CASE}_pred3.*"))
    np.testing.assert_array_equal(read_image(last)[0], viewer_mask)


# ----------------------------------------------------------------------------- a real browser
def _chromium():
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
                 f"--user-data-dir={ARTIFACTS / ('chromium-' + uuid.uuid4().hex)}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def _wait(browser, script: str, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {script}: state {browser.execute_script('return window.viewer && window.viewer.state')}")


def _mask_pixels(png_path: Path) -> int:
    """Pixels of the page drawn in the mask's colour (NiiVue's 'green' colormap over the PET)."""
    import matplotlib.image

    image = matplotlib.image.imread(png_path)[..., :3]
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return int(np.count_nonzero((g > 0.45) & (g > r + 0.2) & (g > b + 0.2)))


def test_page_click_on_a_lesion_shows_the_mask_and_undo(server):
    from selenium.webdriver.common.action_chains import ActionChains

    if not (REPO / "viewer" / "static" / "vendor" / "niivue" / "index.js").is_file():
        pytest.fail("NiiVue is not installed in viewer/static/vendor: run ./setup.sh")
    browser = _chromium()
    try:
        browser.get(server.base + "/")
        _wait(browser, "return window.viewer && window.viewer.loaded")
        browser.execute_script(f"window.viewer.openCase('{CASE}')")
        _wait(browser, "return window.viewer.state.ready && !window.viewer.state.busy")
        sid = browser.execute_script("return window.viewer.state.session")
        step0 = _mask(server, sid)
        lesion = _simulated()["tumor"][0]
        x, y = browser.execute_script(f"return window.viewer.voxelToCanvas({lesion})")
        canvas = browser.find_element("id", "gl")
        ActionChains(browser).move_to_element_with_offset(
            canvas, x - canvas.size["width"] / 2, y - canvas.size["height"] / 2).click().perform()
        _wait(browser, "return window.viewer.state.answers >= 2 && !window.viewer.state.busy")
        state = browser.execute_script("return window.viewer.state")
        assert state["error"] is None, state
        assert state["last"]["clicks"]["tumor"] == [lesion], state["last"]
        mask = _mask(server, sid)
        assert mask[tuple(lesion)] == 1
        time.sleep(1.0)  # the overlay's texture upload
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "viewer_click.png"
        browser.save_screenshot(str(shot))
        assert _mask_pixels(shot) > 30, f"no mask overlay visible in {shot}"
        browser.find_element("id", "undo").click()
        _wait(browser, "return window.viewer.state.answers >= 3 && !window.viewer.state.busy")
        np.testing.assert_array_equal(_mask(server, sid), step0)
        assert browser.execute_script("return document.getElementById('click-list').children.length") == 0
    finally:
        browser.quit()
