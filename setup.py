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
                                    "Task2*", "publication_template*", "local_challenge*"]),
    install_requires=requirements,
    extras_require={"test": ["pytest>=7"]},
    entry_points={
        "console_scripts": [
            "autopet-phantoms=autopet_common.phantoms:main",
        ],
    },
)
