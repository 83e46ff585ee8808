"""The course's detector as a toolkit: ``python -m workshop predict | eval | serve | export | train``.

    predict.py   images, folders and videos -> COCO results JSON (+ a sidecar naming each image
                 id's file and frame), optionally the media with the boxes drawn
    evaluate.py  ``eval``: the course's COCO evaluation (bit-exact with pycocotools) of a
                 results file against COCO ground truth, or Pascal VOC against a VOC folder
    serve.py     ``serve``: a web page and a JSON API (FastAPI + uvicorn) around one detector
                 loaded at start-up; page.py holds the page (plain HTML and JS, no CDN)
    detection.py the detector these commands share: the checkpoint, the stages (the
                 reference's or a learner's), score / count / class filters, results as dicts
    stages.py    a learner's stages taken from their notebook's solution cells
    media.py     reading images (header checked before decoding) and video frames (streamed),
                 drawing boxes with OpenCV, writing files atomically
    export.py    ``export``: TensorFlow Lite (tflite.py), ``--report`` (size, latency, mAP) and
                 ``--bench`` (benchmark.py: frames/s of every engine, training steps/s)
    training.py  ``train``: ``train detector --dataset`` on a COCO / VOC data set of your own
                 (datasets.py: reading it, the letterbox), resumable; else workshop.train

Conventions: boxes are float ``(N, 4)`` **xyxy** in continuous pixel coordinates of the image as
read (no "+1"; see :mod:`workshop.conventions`); COCO files hold ``bbox`` as xywh. Images are
uint8 ``(H, W, 3)`` RGB. Class ids are the detector's ``1..K`` (0 is the background), named by
:data:`workshop.data.synthetic.CLASS_NAMES`, or by the data set a checkpoint was trained on
(its ``detector.json``).

Nothing here is imported at ``import workshop`` time, and nothing here is learner-facing: the
toolkit may use the reference stages and the evaluation (the course's answers).
"""
