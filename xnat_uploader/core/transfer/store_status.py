"""A C-STORE response's status (PS3.7 C, PS3.4 B.2.3) in words, and what the sender does about it.

Success and warnings count as stored; "out of resources" is worth sending again later; every other
failure refuses that one file for good, and the user reads the code, its standard name and what it
means in plain words. Pure functions; any thread.
"""

from __future__ import annotations

_WARNINGS = {0xB000: "coercion of data elements", 0xB006: "elements discarded",
             0xB007: "data set does not match SOP class"}  # fmt: skip
_OTHERS = {0x0110: "processing failure", 0x0111: "duplicate SOP instance", 0x0117: "invalid SOP instance",
           0x0119: "class-instance conflict", 0x0120: "missing attribute", 0x0121: "missing attribute value",
           0x0122: "SOP class not supported", 0x0124: "not authorised", 0x0210: "duplicate invocation",
           0x0211: "unrecognised operation", 0x0212: "mistyped argument", 0x0213: "resource limitation",
           0x0001: "warning", 0x0107: "attribute list error", 0x0116: "attribute value out of range"}  # fmt: skip
# What a refusal means for the user's file, in plain words.
_MEANINGS = {0x0110: "it failed while processing the file", 0x0111: "it already holds an object with this UID",
             0x0117: "it finds the file's SOP Instance UID invalid",
             0x0119: "the file's SOP class does not match the one it was sent as",
             0x0120: "the file lacks a field the receiver needs", 0x0121: "a field the receiver needs is empty",
             0x0122: "it does not take this kind of DICOM object", 0x0124: "it does not let us store there",
             0x0211: "it does not take DICOM objects by C-STORE"}  # fmt: skip


def status_words(status: int) -> str:
    """The status's name in the standard, e.g. 0xC000 "cannot understand"."""
    if status in _WARNINGS:
        return _WARNINGS[status]
    if 0xA700 <= status <= 0xA7FF:
        return "out of resources"
    if 0xA900 <= status <= 0xA9FF:
        return "data set does not match SOP class"
    if 0xC000 <= status <= 0xCFFF:
        return "cannot understand"
    return _OTHERS.get(status, "unknown status")


def meaning(status: int) -> str:
    """What a failure status says about the file, in plain words."""
    if 0xA700 <= status <= 0xA7FF:
        return "it had no room or could not store the file"
    if 0xA900 <= status <= 0xA9FF:
        return "the file's contents do not match its kind of DICOM object"
    if 0xC000 <= status <= 0xCFFF:
        return "it could not read or process the file"
    return _MEANINGS.get(status, "its log may say why")


def refusal(status: int, comment: str = "") -> str:
    """A refused file's reason: the code, its name, its meaning, and the receiver's own comment if any."""
    said = f"; its comment: {comment}" if comment else ""
    return f"refused by the DICOM receiver: 0x{status:04X} {status_words(status)} ({meaning(status)}{said})"


def is_warning(status: int) -> bool:
    """Stored, with a warning (PS3.4 B.2.3: 0xBxxx; PS3.7 C: 0x0001, 0x0107, 0x0116)."""
    return status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF


def is_retryable(status: int) -> bool:
    """Worth sending again later: the receiver was out of resources (XNAT says 0xA700 for server errors)."""
    return 0xA700 <= status <= 0xA7FF or status == 0x0213
