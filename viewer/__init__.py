"""A person in the loop for Task 1: a local server (:mod:`viewer.server`, FastAPI + uvicorn) and a
web page (``viewer/static``, NiiVue served locally) where someone clicks on PET/CT and the model
answers in seconds. The clicking itself is :class:`Task1.interactive.ClickSession`; this package
adds the cases a server offers (:mod:`viewer.cases`), the sessions it keeps (:mod:`viewer.sessions`)
and the HTTP API. Start it with ``autopet-viewer`` (``python -m viewer``)."""
