"""OMERO's tables are read in catalog/ only (docs/architecture.md, issue 21 finding 5): no
other module of the app names one in a statement. Fails naming the module and table."""
import ast
import re
from pathlib import Path

import omero_storagemanager

PACKAGE = Path(omero_storagemanager.__file__).parent
OMERO_TABLES = ("experimenter", "experimentergroup", "groupexperimentermap", "project",
                "dataset", "image", "screen", "plate", "well", "wellsample", "fileset",
                "filesetentry", "originalfile", "pixels", "thumbnail", "annotation",
                "projectdatasetlink", "datasetimagelink", "screenplatelink", "event",
                "experimenter_config", "checksumalgorithm", "pixelsoriginalfilemap")
STATEMENT = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)", re.I)


def _statements_outside_catalog():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("catalog", "migrations"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for table in STATEMENT.findall(node.value):
                    if table.lower() in OMERO_TABLES:
                        yield f"{relative}:{node.lineno}: {table}"


def test_omero_tables_are_read_in_the_catalog_only():
    found = list(_statements_outside_catalog())
    assert found == [], "OMERO SQL outside catalog/: " + "; ".join(found)


def test_the_check_sees_a_statement_when_there_is_one(tmp_path):
    sample = ast.parse('QUERY = "SELECT id FROM experimenter WHERE id = %s"')
    texts = [n.value for n in ast.walk(sample) if isinstance(n, ast.Constant)]
    assert STATEMENT.findall(texts[0]) == ["experimenter"]
