"""``python -m workshop serve``: the detector behind a web page and a JSON API (FastAPI, uvicorn).

    GET  /              a page: upload an image, see its boxes, classes and scores drawn (SVG)
    GET  /api/health    {"status": "ok", "classes": [...], "stages": {...}, limits}
    POST /api/predict   the image as the multipart field ``image``, or as the raw body
                        (Content-Type image/* or application/octet-stream); optional query
                        ``min_score`` (at least the server's --min-score)
         -> {"detections": [{"box": [x1, y1, x2, y2], "score": s, "class": "name",
                             "class_id": k}, ...],
             "image": {"width": W, "height": H}, "seconds": t}

Boxes are xyxy in continuous pixel coordinates of the uploaded image (upright by its EXIF
orientation, as browsers show it), by decreasing score.

Bad input gets a 4xx and ``{"error": "what is wrong and what to send"}``: no or empty body
(400), a multipart request without a file field ``image`` (400), a content type that is not an
image (415), an upload over ``--max-upload-mb`` (413: refused on its Content-Length before any
of it is read, or as soon as the bytes counted while streaming pass the limit), bytes that are
not an image (422), an image over ``--max-megapixels`` (422, from its header, before decoding).
The detector is loaded once, at start-up; requests run it one at a time in a worker thread, so
the server keeps answering (health, the page) while it works.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request),
# which are imported inside create_app, at definition time
import argparse
import sys
import time
from collections.abc import AsyncIterator

from .detection import Predictor, ToolkitError, load_predictor
from .media import MediaError, read_image

RAW_TYPES = ("application/octet-stream", "")


class ApiError(Exception):
    """A request the API refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class TooLarge(Exception):
    """Raised inside the body stream when the bytes received pass the limit."""


def _mb(n: float) -> str:
    return f"{n / 1e6:.3g} MB"


async def limited(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The request body's chunks, counting bytes: :class:`TooLarge` as soon as they pass
    ``limit`` (whatever the Content-Length said, or when there was none)."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise TooLarge(received)
        yield chunk


def check_length(headers, limit: int) -> None:
    """Refuse on the declared Content-Length alone (nothing read yet)."""
    declared = headers.get("content-length")
    if declared is None:
        return
    try:
        n = int(declared)
    except ValueError:
        raise ApiError(400, f"Content-Length {declared[:40]!r} is not a number") from None
    if n > limit:
        raise ApiError(413, f"the upload is {_mb(n)}; the limit is {_mb(limit)} (--max-upload-mb)")
    if n == 0:
        raise ApiError(400, "empty body: send an image as the body or as the multipart file field 'image'")


async def image_bytes(request, limit: int) -> bytes:
    """The uploaded file's bytes: the multipart field ``image`` or the raw body, at most
    ``limit`` bytes. Raises :class:`ApiError` for everything a client can get wrong."""
    check_length(request.headers, limit)
    mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if mime == "multipart/form-data":
            return await _multipart_image(request, limit)
        if mime.startswith("image/") or mime in RAW_TYPES:
            body = bytearray()
            async for chunk in limited(request.stream(), limit):
                body += chunk
            if not body:
                raise ApiError(400, "empty body: send an image as the body or as the multipart file field 'image'")
            return bytes(body)
    except TooLarge as err:
        raise ApiError(413, f"the upload passed {_mb(err.args[0])}; the limit is {_mb(limit)} "
                            "(--max-upload-mb)") from None
    raise ApiError(415, f"content type {mime!r} is not an image: send the image with Content-Type image/* "
                        "(e.g. image/jpeg) or application/octet-stream, or as multipart/form-data with a "
                        "file field 'image'")


async def _multipart_image(request, limit: int) -> bytes:
    from starlette.formparsers import MultiPartException, MultiPartParser

    parser = MultiPartParser(request.headers, limited(request.stream(), limit), max_files=4, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise ApiError(400, f"malformed multipart body: {err}") from None
    try:
        upload = form.get("image")
        if upload is None:
            raise ApiError(400, f"no field 'image' in the form (fields: {sorted(form.keys()) or 'none'}); "
                                "send the image as the file field 'image'")
        if isinstance(upload, str):
            raise ApiError(400, "the field 'image' is text, not a file: send it as a file "
                                "(curl -F image=@photo.jpg, or FormData.append('image', file))")
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise ApiError(400, "the file in field 'image' is empty")
    return data


def _min_score(request, floor: float) -> float:
    text = request.query_params.get("min_score")
    if text is None:
        return floor
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ApiError(422, f"min_score {text[:40]!r}: expected a number in [0, 1]")
    return max(value, floor)


def create_app(predictor: Predictor, max_upload_bytes: int, max_pixels: int):
    """The FastAPI application around an already loaded ``predictor``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from .page import PAGE

    app = FastAPI(title="workshop detector", docs_url=None, redoc_url=None)   # no CDN pages

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException):
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        return JSONResponse({"error": f"invalid request: {err.errors()}"}, status_code=422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, err: Exception):
        return JSONResponse({"error": f"the detector failed: {type(err).__name__}: {err}"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok", "classes": list(predictor.class_names[1:]), "stages": predictor.stages.summary(),
                "min_score": predictor.min_score, "max_detections": predictor.max_detections,
                "max_upload_mb": max_upload_bytes / 1e6, "max_megapixels": max_pixels / 1e6}

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        min_score = _min_score(request, predictor.min_score)
        data = await image_bytes(request, max_upload_bytes)
        try:
            rgb = await run_in_threadpool(read_image, data, max_pixels)
        except MediaError as err:
            raise ApiError(422, f"not an image we can use: {err}") from None
        start = time.perf_counter()
        result = await run_in_threadpool(predictor.predict, rgb)
        keep = result["scores"] > min_score if min_score > predictor.min_score else slice(None)
        result = {k: v[keep] for k, v in result.items()}
        return {"detections": predictor.as_json(result),
                "image": {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])},
                "seconds": round(time.perf_counter() - start, 4)}

    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workshop serve",
                                description="Serve the detector: a web page at / and a JSON API "
                                            "(POST /api/predict, GET /api/health).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                                                       "0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", metavar="OUT.tflite",
                   help="run this TensorFlow Lite model (python -m workshop export) instead of the Keras weights")
    p.add_argument("--checkpoint", metavar="DIR", help="detector weights folder (default: the course's checkpoint)")
    p.add_argument("--stages", metavar="NOTEBOOK", action="append", default=[],
                   help="use your own stages from this notebook where they are implemented (repeatable); "
                        "runs the notebook's code in the server: only for notebooks you trust")
    p.add_argument("--min-score", type=float, default=0.05, metavar="S", help="return detections scoring above S (default 0.05)")
    p.add_argument("--max-detections", type=int, default=100, metavar="N", help="at most N per image (default 100)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, metavar="N", help="largest upload in MB (default 10)")
    p.add_argument("--max-megapixels", type=float, default=40.0, metavar="MP",
                   help="largest image in megapixels, checked before decoding (default 40)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        print("serve: --max-upload-mb and --max-megapixels must be positive", file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError as err:
        print(f"serve: {err.name} is not installed (pip install -r requirements.txt)", file=sys.stderr)
        return 3
    try:
        predictor = load_predictor(args.checkpoint, args.stages, args.min_score, args.max_detections,
                                   model=args.model)
    except ToolkitError as err:
        print(f"serve: {err}", file=sys.stderr)
        return 2
    print("\n".join(predictor.describe()))
    app = create_app(predictor, int(args.max_upload_mb * 1e6), int(args.max_megapixels * 1e6))
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving the detector on http://{host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
