"""Check that every bits/dim-like figure in the docs has its evidence committed (not a test).

    python bench/check_docs.py

Reads README.md and every Markdown file under docs/, finds each number written with 3 or 4
decimals (how this project prints bits/dim and standard errors), and looks for it among the
floats of the JSON files committed under docs/runs/ (eval.json, metrics.jsonl, run.json, …),
rounded to the figure's own precision. Prints every figure it cannot find, with its file and
line, and exits 1 if there is any: such a number has no committed output behind it and must get
one (``docs/runs/<name>/``) or go. A line may carry the marker ``<!-- unchecked: reason -->`` to
exempt its figures (numbers quoted from papers, differences of two checked figures), so every
exemption is written down where the number is.
"""
import glob
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURE = re.compile(r"(?<![\d.])(\d+\.\d{3,4})(?!\d)")
EXEMPT = "<!-- unchecked:"


def evidence_values(root):
    """The magnitude of every float in the JSON and JSON-lines files under ``root``."""
    values = set()

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, float):
            values.add(abs(node))  # a figure's sign is written apart from it ("−0.0375", "lower by")

    for path in glob.glob(os.path.join(root, "**", "*.json*"), recursive=True):
        with open(path) as handle:
            if path.endswith(".jsonl"):
                for line in handle:
                    if line.strip():
                        walk(json.loads(line))
            else:
                walk(json.load(handle))
    return values


def unsupported(path, values):
    """``(line number, figure)`` of the figures of ``path`` that no evidence value matches."""
    missing = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if EXEMPT in line:
                continue
            for match in FIGURE.finditer(line):
                figure = match.group(1)
                decimals = len(figure.split(".")[1])
                if not any(round(value, decimals) == float(figure) for value in values):
                    missing.append((number, figure))
    return missing


def main():
    values = evidence_values(os.path.join(REPO, "docs", "runs"))
    documents = [os.path.join(REPO, "README.md"),
                 *sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))]
    count = 0
    for path in documents:
        for number, figure in unsupported(path, values):
            print(f"{os.path.relpath(path, REPO)}:{number}: {figure} has no committed evidence")
            count += 1
    print(f"{count} figure(s) without evidence in {len(documents)} documents "
          f"({len(values)} values in docs/runs)")
    return 1 if count else 0


if __name__ == "__main__":
    sys.exit(main())
