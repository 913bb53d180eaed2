"""axe-core (vendored in tests/vendor/axe-core, MPL-2.0) run in the page a browser test
shows: the serious and critical violations, each with the elements it found, so a
failing test says what to fix."""
from pathlib import Path

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def axe_violations(driver, impacts=BLOCKING):
    """[(rule id, impact, help, [target selectors])] of the page now shown."""
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(function (r) { done(r.violations.map(function (v) {"
        "  return [v.id, v.impact, v.help, v.nodes.slice(0, 5).map(function (n) {"
        "    return n.target.join(' '); })]; })); })"
        ".catch(function (e) { done([['axe-error', 'critical', String(e), []]]); });")
    return [tuple(v) for v in result if v[1] in impacts]


def assert_accessible(driver, where):
    driver.set_script_timeout(60)
    found = axe_violations(driver)
    assert not found, f"axe-core on {where}: " + "; ".join(
        f"{rule} ({impact}): {help_} at {', '.join(targets)}"
        for rule, impact, help_, targets in found)
