"""The server's routes, one router per area; ``serve.app.create_app`` includes them all.

    pages.py     GET /, /favicon.ico, /docs: the page and the offline API documentation
    predict.py   POST /api/predict, /api/predict/batch: images in, answers out
    samples.py   POST /api/samples: a corrected drawing kept for fine-tuning
    meta.py      GET /api/health, /api/model, /metrics: about the server and its model
    deps.py      what the handlers take from a request (settings, options, images), as dependencies
"""
