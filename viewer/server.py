"""The viewer's HTTP server: the page, the NiiVue module, and a JSON API over click sessions.

    autopet-viewer --model models/task1_phantom_organs --cohort test/sample_cohort   # http://127.0.0.1:8000

API (OpenAPI at ``/docs``; points are voxel indices ``[i, j, k]`` of the case's PET grid):

- ``GET /api/cases``: the cases offered (name, whether a label allows the replay).
- ``POST /api/sessions`` ``{"case": name}``, or ``POST /api/sessions/upload`` (form fields ``ct``
  and ``pet``: ``.nii.gz``, ``.nii`` or ``.mha`` files, at most ``--max_upload_mb``): open a
  session; the answer holds its id, shape, spacing and the first (step-0) mask's voxel count.
- ``POST /api/sessions/{id}/clicks`` ``{"kind": "tumor" | "background", "point": [i, j, k]}``:
  the new mask's voxel count, the box of voxels that changed, the seconds it took.
- ``POST .../undo``, ``POST .../reset``, ``POST .../replay`` ``{"step": s}`` (the challenge's
  simulated clicks of step s, scored; cases with a label), ``DELETE /api/sessions/{id}``.
- ``GET .../mask`` (``.nii.gz`` on the case's grid), ``GET .../clicks`` (the challenge's
  "Multiple points" JSON, replayable with ``python -m local_challenge --clicks``),
  ``GET .../volume/ct`` and ``.../volume/pet`` (``.nii`` for the page), ``GET .../mip.png``.

Errors are JSON ``{"detail": message}`` with a 4xx status naming the problem; a failed request
changes no session. With ``token`` set, every ``/api`` request must carry it
(``Authorization: Bearer <token>`` or ``?token=``).
"""
# no "from __future__ import annotations": FastAPI reads the endpoints' annotations, and
# the request types are imported inside create_app (nothing web-related at import time)
import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autopet_common.errors import InputError
from viewer.cases import CaseSource, LoadedCase, load_case
from viewer.sessions import SessionError, SessionStore

log = logging.getLogger("viewer.server")
STATIC_DIR = Path(__file__).resolve().parent / "static"
NIIVUE_MODULE = STATIC_DIR / "vendor" / "niivue" / "index.js"
DEFAULT_MAX_UPLOAD_MB = 512
UPLOAD_SUFFIXES = (".nii.gz", ".nii", ".mha")


def _volume_bytes(array: np.ndarray, geometry: Any, suffix: str) -> bytes:
    """An image file's bytes (``suffix`` ".nii" or ".nii.gz") for ``array[i, j, k]`` on ``geometry``."""
    from autopet_common.image_io import to_sitk, write_sitk_image

    with tempfile.TemporaryDirectory(prefix="autopet-viewer-") as tmp:
        path = Path(tmp) / f"volume{suffix}"
        write_sitk_image(to_sitk(array, geometry), path, compress=suffix.endswith(".gz"))
        return path.read_bytes()


def _mip_png(pet: np.ndarray, mask: np.ndarray | None, clicks: dict[str, list]) -> bytes:
    """A coronal maximum intensity projection of the PET (inverted grey, SUV 0..10) with the mask's
    projection in red and the clicks as dots (tumor red, background blue)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    mip = np.max(pet, axis=1).T[::-1]  # [i, k] -> rows k (head up), columns i
    figure = Figure(figsize=(3, 3 * mip.shape[0] / max(mip.shape[1], 1)), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(mip, cmap="gray_r", vmin=0, vmax=10, aspect="auto", interpolation="nearest")
    if mask is not None and mask.any():
        projection = np.max(mask, axis=1).T[::-1].astype(float)
        axes.imshow(np.ma.masked_where(projection == 0, projection), cmap="autumn", alpha=0.55, aspect="auto",
                    interpolation="nearest")
    for kind, colour in (("tumor", "#e0201b"), ("background", "#1f5fe0")):
        points = clicks.get(kind) or []
        if points:
            axes.scatter([p[0] for p in points], [mip.shape[0] - 1 - p[2] for p in points], s=18, c=colour,
                         edgecolors="white", linewidths=0.6)
    axes.set_axis_off()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _read_upload(data: bytes, filename: str, what: str) -> tuple[np.ndarray, Any]:
    from autopet_common.image_io import read_image

    name = Path(filename or "").name
    suffix = next((s for s in UPLOAD_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        raise InputError(f"uploaded {what} {name!r}: expected a {', '.join(UPLOAD_SUFFIXES)} file")
    with tempfile.TemporaryDirectory(prefix="autopet-viewer-upload-") as tmp:
        path = Path(tmp) / f"{what.lower()}{suffix}"
        path.write_bytes(data)
        try:
            return read_image(path, dtype=np.float32, check_finite=True, what=f"uploaded {what} {name!r}")
        except InputError:
            raise
        except Exception as exc:  # a reader's own error for a corrupt file
            raise InputError(f"uploaded {what} {name!r} cannot be read as an image: {exc}") from None


def create_app(method: Any, cases: Sequence[CaseSource], *, store: SessionStore | None = None,
               token: str | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 ** 2,
               model_name: str | None = None):
    """The FastAPI application: ``method`` (:func:`Task1.session.open_method`, shared by every
    session), the ``cases`` offered, the session ``store``; ``token``: required on ``/api`` when set."""
    from fastapi import Body, FastAPI, File, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    from Task1.interactive import ClickSession

    store = SessionStore() if store is None else store
    by_name = {case.name: case for case in cases}
    app = FastAPI(title="autoPET/CT IV Task 1 viewer",
                  description="Click on PET/CT, the Task 1 model answers. Points are voxel indices [i, j, k] "
                              "of the case's PET grid.")

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(SessionError)
    async def _session_error(request: Request, exc: SessionError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {error.get('msg')}")
        return JSONResponse({"detail": "bad request: " + "; ".join(parts)}, status_code=422)

    @app.middleware("http")
    async def _check_upload_size(request: Request, call_next):
        # before the form is parsed (FastAPI spools it first): refuse a declared size over the limit
        if request.url.path == "/api/sessions/upload":
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_upload_bytes:
                return JSONResponse({"detail": f"upload of {int(declared) / 1024 ** 2:.1f} MB exceeds the limit of "
                                               f"{max_upload_bytes / 1024 ** 2:.0f} MB (--max_upload_mb)"},
                                    status_code=413)
        return await call_next(request)

    @app.middleware("http")
    async def _check_token(request: Request, call_next):
        if token and request.url.path.startswith("/api/"):
            given = request.query_params.get("token")
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                given = header[7:].strip()
            if not given or not _same(given, token):
                return JSONResponse({"detail": "missing or wrong token (Authorization: Bearer <token> or ?token=)"},
                                    status_code=401)
        return await call_next(request)

    def describe(opened) -> dict[str, Any]:
        session = opened.session
        return {"session": opened.id, "case": opened.case_name, "shape": list(session.shape),
                "spacing": list(session.geometry.spacing), "has_label": opened.has_label,
                "clicks": session.clicks, "voxels": None if session.mask is None else int(session.mask.sum()),
                "prepare_seconds": round(session.prepare_seconds, 3)}

    def open_session(loaded: LoadedCase) -> dict[str, Any]:
        store.reserve()
        started = time.perf_counter()
        with store.model_lock:
            session = ClickSession(method, loaded.ct, loaded.pet, loaded.geometry, name=loaded.name,
                                   label=loaded.label, dataset_name=loaded.dataset_name)
            first = session.start()
        opened = store.add(loaded.name, session, loaded.label is not None)
        log.info("session %s: case %s opened in %.1f s", opened.id, loaded.name, time.perf_counter() - started)
        return {**describe(opened), "first_answer": first.to_json(), "seconds": round(time.perf_counter() - started, 3)}

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "model": model_name, "sessions": len(store), "max_sessions": store.max_sessions}

    @app.get("/api/cases")
    def list_cases() -> dict[str, Any]:
        return {"cases": [{"name": c.name, "has_label": c.label_path is not None} for c in cases]}

    @app.post("/api/sessions")
    def create_session(body: dict = Body(..., examples=[{"case": "PHANTOM_FDG_0000"}])) -> dict[str, Any]:
        name = body.get("case") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise InputError('expected {"case": <name>} with a case name from GET /api/cases')
        if name not in by_name:
            raise SessionError(f"unknown case {name!r}; the cases are: {', '.join(sorted(by_name)) or 'none'}", 404)
        return open_session(load_case(by_name[name]))

    @app.post("/api/sessions/upload")
    async def upload_session(ct: UploadFile = File(...), pet: UploadFile = File(...)):
        files = {}
        total = 0
        for what, upload in (("CT", ct), ("PET", pet)):
            data = await upload.read(max_upload_bytes + 1)
            total += len(data)
            if total > max_upload_bytes:
                raise SessionError(f"upload exceeds the limit of {max_upload_bytes / 1024 ** 2:.0f} MB (--max_upload_mb)",
                                   413)
            files[what] = (data, upload.filename or "")
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_open_upload, files)

    def _open_upload(files: dict) -> dict[str, Any]:
        from autopet_common.image_io import strip_image_suffix
        from Task1.inputs import ct_on_pet_grid

        ct, ct_geometry = _read_upload(*files["CT"], "CT")
        pet, geometry = _read_upload(*files["PET"], "PET")
        ct = ct_on_pet_grid(ct, ct_geometry, geometry)

        name = f"upload:{strip_image_suffix(Path(files['PET'][1] or 'pet.nii.gz'))}"
        return open_session(LoadedCase(name, ct, pet, None, geometry))

    @app.get("/api/sessions/{sid}")
    def get_session(sid: str) -> dict[str, Any]:
        return describe(store.get(sid))

    @app.delete("/api/sessions/{sid}")
    def delete_session(sid: str) -> dict[str, Any]:
        store.close(sid)
        return {"closed": sid}

    def interact(sid: str, action) -> dict[str, Any]:
        opened = store.get(sid)
        with store.model_lock:
            answer = action(opened.session)
        return {"session": sid, **answer.to_json()}

    @app.post("/api/sessions/{sid}/clicks")
    def add_click(sid: str, body: dict = Body(..., examples=[{"kind": "tumor", "point": [31, 40, 17]}])):
        if not isinstance(body, dict) or "kind" not in body or "point" not in body:
            raise InputError('expected {"kind": "tumor" | "background", "point": [i, j, k]}')
        return interact(sid, lambda session: session.click(body["kind"], body["point"]))

    @app.get("/api/sessions/{sid}/clicks")
    def get_clicks(sid: str):
        from autopet_common.click_io import clicks_to_gc_format

        opened = store.get(sid)
        return JSONResponse(clicks_to_gc_format(opened.session.clicks),
                            headers={"Content-Disposition": f'attachment; filename="{_file_stem(opened)}_clicks.json"'})

    @app.post("/api/sessions/{sid}/undo")
    def undo(sid: str):
        return interact(sid, lambda session: session.undo())

    @app.post("/api/sessions/{sid}/reset")
    def reset(sid: str):
        return interact(sid, lambda session: session.reset())

    @app.post("/api/sessions/{sid}/replay")
    def replay(sid: str, body: dict = Body(..., examples=[{"step": 3}])):
        step = body.get("step") if isinstance(body, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            raise InputError(f'expected {{"step": 0..10}}, got {body!r}')
        return interact(sid, lambda session: session.replay(step))

    @app.get("/api/sessions/{sid}/mask")
    def get_mask(sid: str):
        opened = store.get(sid)
        session = opened.session
        data = _volume_bytes(session.mask.astype(np.uint8), session.geometry, ".nii.gz")
        return Response(data, media_type="application/gzip",
                        headers={"Content-Disposition": f'attachment; filename="{_file_stem(opened)}_mask.nii.gz"'})

    @app.get("/api/sessions/{sid}/volume/{which}")
    def get_volume(sid: str, which: str):
        session = store.get(sid).session
        if which not in ("ct", "pet"):
            raise SessionError(f"unknown volume {which!r}: ct or pet", 404)
        # the CT in int16 (HU fit) halves what the page loads; the PET stays float32 (SUV)
        array = np.clip(np.rint(session.case.ct), -32768, 32767).astype(np.int16) if which == "ct" else session.case.pet
        return Response(_volume_bytes(array, session.geometry, ".nii"), media_type="application/octet-stream")

    @app.get("/api/sessions/{sid}/mip.png")
    def get_mip(sid: str):
        session = store.get(sid).session
        return Response(_mip_png(session.case.pet, session.mask, session.clicks), media_type="image/png")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _same(given: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(given.encode(), expected.encode())


def _file_stem(opened) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in opened.case_name)


def niivue_problem() -> str | None:
    """Why the page cannot load NiiVue (its module not installed), or None."""
    if NIIVUE_MODULE.is_file():
        return None
    return (f"NiiVue is not installed at {NIIVUE_MODULE}: run ./setup.sh (it runs npm ci in viewer/ and copies "
            "the pinned @niivue/niivue module there)")
