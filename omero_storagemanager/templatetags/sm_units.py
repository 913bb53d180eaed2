"""`{{ n|iec }}`: bytes in IEC units (KiB, MiB, GiB), as the pages' scripts (SM.bytes),
the command line (humanize, binary=True) and `du -h` show them; Django's own
filesizeformat writes powers of 1024 as "KB", which is not what they are."""
import humanize
from django import template

register = template.Library()


@register.filter
def iec(value):
    if value is None or value == "":
        return "–"
    return humanize.naturalsize(int(value), binary=True)
